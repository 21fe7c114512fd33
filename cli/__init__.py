"""The ``bootyard`` command: the operator's command line for the inventory and the boot timeline.

An application on top of ``shared/`` (not a service: it answers no network peer). Run it as
``bootyard`` (installed by pyproject's ``[project.scripts]``) or ``python -m cli``.
"""
