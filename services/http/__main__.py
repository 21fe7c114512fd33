"""``python -m services.http``: the HTTP service (boot scripts, install files, files, admin API)."""

from __future__ import annotations

import sys

from services.http.settings import HttpSettings
from services.http.transport import serve
from shared import runtime


def main(argv=None) -> int:
    return runtime.run_service("http", HttpSettings, serve, argv)


if __name__ == "__main__":
    sys.exit(main())
