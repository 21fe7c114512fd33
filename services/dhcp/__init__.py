"""The DHCP service. Its packet path (codec, policy, replies, server, transport) may run
compiled.

``make native`` (part of ``make install`` and the image) builds those modules with mypyc from
the same typed source (scripts/build_native.py), and :func:`shared.native.choose` decides here,
before any of them is imported, whether the build is used (it matches the sources and
``BOOTYARD_DHCP_NATIVE`` is not ``0``) or the pure-Python sources, for all of them. ``NATIVE``
says which, ``NATIVE_REASON`` why not (the service logs both when it starts).
"""

from shared import native as _native

# what scripts/build_native.py compiles
COMPILED = ("codec", "policy", "replies", "server", "transport")
GROUP = "native"                                     # mypyc's group library: native__mypyc.<suffix>
SWITCH = "BOOTYARD_DHCP_NATIVE"

NATIVE_REASON = _native.choose(__path__[0], COMPILED, GROUP, SWITCH)
NATIVE = NATIVE_REASON is None
