"""``python -m services.blockexport`` in a lab namespace, for the service tests."""

from __future__ import annotations

from harness.labservice import LabService


class BlockexportProcess(LabService):
    """``python -m services.blockexport`` inside a namespace, its log in a file."""

    service = "blockexport"
    defaults = {"interface": "eth0", "metrics_host": "127.0.0.1", "metrics_port": "0",
                "housekeeping_interval": "0.5"}
