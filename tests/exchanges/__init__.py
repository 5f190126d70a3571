"""Per-exchange tests: recorded frames, the fake's rules, and end to end (three files each)."""
