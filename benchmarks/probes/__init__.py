"""Probes: measurements taken on trained networks rather than by training them (receptive_fields.py)."""
