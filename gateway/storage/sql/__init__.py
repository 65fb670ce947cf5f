"""The SQL both backends run: each protocol written once, with ? placeholders, over SqlDatabase."""
