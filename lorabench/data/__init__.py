"""Data: built-in synthetic generators (offline, deterministic) and real-data sources."""
