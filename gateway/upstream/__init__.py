"""Talking to Parallel: the client, the team key, retries, and upstream errors."""
