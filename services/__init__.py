"""The bootyard services, each runnable as ``python -m services.<name>``."""
