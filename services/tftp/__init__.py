"""bootyard's read-only TFTP service (issue 7): boot loaders and per-host configs."""
