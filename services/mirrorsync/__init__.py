"""bootyard's mirror sync service: scheduled rsync of OS mirrors into checked, atomically
published snapshots (docs/mirrorsync.md)."""
