"""``python -m cli``: the ``bootyard`` command."""

import sys

from cli.commands import main

sys.exit(main())
