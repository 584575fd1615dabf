"""Deciding what goes live: the promotion gate, the comparison with the live file, re-optimising."""
