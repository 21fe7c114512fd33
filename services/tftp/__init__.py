"""bootyard's read-only TFTP service (issue 7): boot loaders and per-host configs.

The per-block path (``session``, ``codec``, ``content`` and the lock-step ``pump``) may run
compiled:
``make native`` (part of ``make install`` and the image) builds them with mypyc (the pump with
Cython), and :func:`shared.native.choose`
decides here, before either is imported, whether the build is used (it matches the sources and
``BOOTYARD_TFTP_NATIVE`` is not ``0``) or the pure-Python sources. ``NATIVE`` says which,
``NATIVE_REASON`` why not (the service logs both when it starts).
"""

from shared import native as _native

COMPILED = ("session", "codec", "content", "pump")  # the modules scripts/build_native.py compiles
CYTHON = ("pump",)               # of those, built with Cython (the others with mypyc)
GROUP = "native"                 # mypyc's group library: native__mypyc.<suffix>
SWITCH = "BOOTYARD_TFTP_NATIVE"

NATIVE_REASON = _native.choose(__path__[0], COMPILED, GROUP, SWITCH)
NATIVE = NATIVE_REASON is None
