"""Versions of the two packages whose private internals bootyard relies on, as tested.

- aiohttp: the HTTP service's fast path (services/http/transport.py) drives aiohttp's
  ``RequestHandler`` through its private attributes (message queue, keep-alive flags).
- prometheus-client: ``shared.metrics.observe_all`` adds to a Histogram's private buckets and sum,
  and the worker processes' metrics use its multiprocess files.

A release of either may rename what we use without notice, and the failure would be silent (the
fast path off, or wrong histograms), so every service refuses to start on a version not listed
here (:func:`shared.runtime.run_service`: one log line ``event=untested_dependency`` naming the
package, the version found and the versions tested; exit status 2). To move to a new version:
install it in the .venv, run the tests, add it here and in pyproject.toml (which pins both
exactly) and run `make lock` (constraints.txt); tests/foundation/test_packaging.py checks that the
three agree.
"""

from __future__ import annotations

TESTED: dict[str, tuple[str, ...]] = {
    "aiohttp": ("3.14.5",),
    "prometheus-client": ("0.26.0",),
}


def untested() -> list[tuple[str, str, tuple[str, ...]]]:
    """``(package, version found, versions tested)`` for each pinned package whose installed
    version is not one of the tested ones (``not installed`` if it is missing)."""
    from importlib import metadata

    problems = []
    for package, versions in TESTED.items():
        try:
            found = metadata.version(package)
        except metadata.PackageNotFoundError:
            found = "not installed"
        if found not in versions:
            problems.append((package, found, versions))
    return problems
