"""The updates service: update lifecycle, leases, checkpoints, journal, events, history."""
