"""Operating the gateway: logs, metrics, health endpoints, status, background chores."""
