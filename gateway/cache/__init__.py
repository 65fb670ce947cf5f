"""The run-input cache: memory and store lookups, caching policy, export and import."""
