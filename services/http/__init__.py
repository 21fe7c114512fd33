"""bootyard's HTTP service: per-host boot scripts and install files, images, mirror, admin API."""
