"""Reliability scenarios: crash loops, rebalances, disorder, broker outage, hostile input."""
