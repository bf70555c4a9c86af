"""Operator commands on a running deployment: roll a generation (and the champion) back, forget a user."""
