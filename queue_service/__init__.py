"""The queue service: leader lease, schedule and clock, draw, outflow, ETA statistics."""
