"""The HTTP edge: tickets, polls and heartbeats, admission tokens, the operator API."""
