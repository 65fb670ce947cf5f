"""Who may call what: app keys, the key ring and rate limits, allowlists, run ownership."""
