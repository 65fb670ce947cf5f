"""Billing: the calls each app makes that Parallel bills, the calls the cache saved it, what they
are estimated to cost, and the counts' way to the store. Not the rate-limit figures replicas
exchange (keys/shared_limits.py)."""
