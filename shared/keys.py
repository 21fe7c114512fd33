"""Every Redis key bootyard reads or writes, in one place (pure: no Redis here).

The key schema is an operator interface (they edit it with ``redis-cli``): docs/inventory.md
lists these keys, docs/dhcp.md the lease keys' fields. Code builds keys only with this module.

==================================  =========  ===============================================
key                                 type       holds
==================================  =========  ===============================================
``bootyard:<kind>:<id>``            hash       one inventory object: kind host, profile,
                                               subnet, export, mirror, netboot, group or image
                                               (:mod:`shared.schema` validates the fields)
``bootyard:events``                 stream     every service's timeline events
``bootyard:events:<mac>``           stream     one inventory host's events
``bootyard:lease:<ip>``             hash       one address's lease (the contract TFTP and HTTP
                                               read: :mod:`shared.leases`)
``bootyard:leases:pool:<subnet>``   sorted     a subnet's dynamic addresses, scored by the
                                    set        time from which each may be handed out
``bootyard:leases:mac:<subnet>``    hash       client identity -> the address it last held
                                               (named when the identity was always the MAC;
                                               it still is, for Ethernet clients)
``bootyard:blockexport:attached:    hash       MAC -> Unix time until which that initiator
<export>``                                     counts as attached to the export (written by
                                               the block export service; the CLI's reset
                                               reads it)
``bootyard:blockexport:target:      hash       an AoE export's config string, mask list and
<export>``                                     reserve list, kept across restarts
``bootyard:mirrorsync:lock:<name>`` string     one mirror's sync lock: the holder's owner
                                               token, with a lease (PX) the holder renews
``bootyard:mirrorsync:status:<name>`` hash     one mirror's sync state (docs/mirrorsync.md),
                                               written by the service, read by the CLI
``bootyard:mirrorsync:requests``    hash       mirror name -> when ``bootyard mirror sync``
                                               asked for a sync now
``bootyard:audit``                  stream     the inventory's change history (who changed
                                               which key, fields before and after)
``bootyard:audit:last``             hash       object key -> digest of its hash as last
                                               recorded (so a change is recorded once)
==================================  =========  ===============================================

:func:`shape_of` names the shape a key has (and the Redis type it must be), so that
``bootyard validate`` can report a key under ``bootyard:`` that matches none (a typo such as
``bootyard:hosts:...``, which every service would ignore) or has the wrong type. A new key shape
is added here, in :data:`SHAPES`, or validate reports it.

The inventory's change counter (``InventoryView.version``) is kept in each service's memory,
not in Redis: services learn of changes from keyspace notifications on the object keys.
"""

from __future__ import annotations

PREFIX = "bootyard"

# inventory objects: bootyard:<kind>:<id>
ANY_KEY = f"{PREFIX}:*"  # SCAN pattern for every bootyard key (objects are picked by split)


def object_key(kind: str, ident: str) -> str:
    """The hash of one inventory object (``ident`` already canonical)."""
    return f"{PREFIX}:{kind}:{ident}"


def object_pattern(kind: str) -> str:
    """SCAN / PSUBSCRIBE pattern matching every object of ``kind``."""
    return f"{PREFIX}:{kind}:*"


def split_object_key(key: str, kinds) -> tuple[str, str] | None:
    """(kind, id) if ``key`` names an object of one of ``kinds``, else None."""
    parts = key.split(":", 2)
    if len(parts) != 3 or parts[0] != PREFIX or parts[1] not in kinds:
        return None
    return parts[1], parts[2]


# the boot timeline
EVENTS_STREAM = f"{PREFIX}:events"
HOST_EVENTS_PREFIX = f"{PREFIX}:events:"


def host_events(mac: str) -> str:
    """One inventory host's event stream."""
    return HOST_EVENTS_PREFIX + mac


# the boot attempt of an inventory host (shared/attempts.py)
ATTEMPT_PREFIX = f"{PREFIX}:attempt:"


def attempt(mac: str) -> str:
    """The hash of one inventory host's current boot attempt (id, bound, loader, acked)."""
    return ATTEMPT_PREFIX + mac


# DHCP leases
LEASE_PREFIX = f"{PREFIX}:lease:"
POOL_PREFIX = f"{PREFIX}:leases:pool:"
BY_CLIENT_PREFIX = f"{PREFIX}:leases:mac:"


def lease(ip: str) -> str:
    """The lease hash of one address."""
    return LEASE_PREFIX + ip


def pool(subnet: str) -> str:
    """The sorted set of a subnet's dynamic addresses."""
    return POOL_PREFIX + subnet


def by_client(subnet: str) -> str:
    """The hash ``client identity -> ip`` of a subnet (the address each client last held)."""
    return BY_CLIENT_PREFIX + subnet


# block export attachments
ATTACHED_PREFIX = f"{PREFIX}:blockexport:attached:"


def export_attached(name: str) -> str:
    """The hash ``MAC -> attached-until time`` of one block export."""
    return ATTACHED_PREFIX + name


TARGET_STATE_PREFIX = f"{PREFIX}:blockexport:target:"
EXPORT_STATUS_PREFIX = f"{PREFIX}:blockexport:status:"


def export_status(name: str) -> str:
    """The hash of what the blockexport service sees of one export (shared/attachments.py)."""
    return EXPORT_STATUS_PREFIX + name


def export_target_state(name: str) -> str:
    """The hash of one AoE export's config string, mask list and reserve list."""
    return TARGET_STATE_PREFIX + name


# mirror sync (services/mirrorsync): "mirrorsync", not "mirror", so that no key here matches the
# inventory's bootyard:mirror:* pattern
MIRROR_LOCK_PREFIX = f"{PREFIX}:mirrorsync:lock:"
MIRROR_STATUS_PREFIX = f"{PREFIX}:mirrorsync:status:"
MIRROR_REQUESTS = f"{PREFIX}:mirrorsync:requests"


def mirror_lock(name: str) -> str:
    """The string holding the owner token of the replica syncing mirror ``name``."""
    return MIRROR_LOCK_PREFIX + name


def mirror_status(name: str) -> str:
    """The hash of mirror ``name``'s sync state."""
    return MIRROR_STATUS_PREFIX + name


# the inventory's change history (shared/audit.py)
AUDIT_STREAM = f"{PREFIX}:audit"
AUDIT_LAST = f"{PREFIX}:audit:last"


# Every key shape but the inventory objects: (prefix or exact key, Redis type, what it holds).
# A prefix ends with ':'; an exact key does not.
SHAPES: tuple[tuple[str, str, str], ...] = (
    (HOST_EVENTS_PREFIX, "stream", "a host's event stream"),
    (EVENTS_STREAM, "stream", "the boot timeline"),
    (LEASE_PREFIX, "hash", "a DHCP lease"),
    (POOL_PREFIX, "zset", "a subnet's pool of dynamic addresses"),
    (BY_CLIENT_PREFIX, "hash", "a subnet's client -> address map"),
    (AUDIT_STREAM, "stream", "the inventory's change history"),
    (AUDIT_LAST, "hash", "the history's last recorded digests"),
    (ATTACHED_PREFIX, "hash", "a block export's attached initiators"),
    (TARGET_STATE_PREFIX, "hash", "an AoE export's saved config string, mask and reserve lists"),
    (MIRROR_LOCK_PREFIX, "string", "a mirror's sync lock"),
    (MIRROR_STATUS_PREFIX, "hash", "a mirror's sync state"),
    (MIRROR_REQUESTS, "hash", "mirror syncs asked for with bootyard mirror sync"),
    (ATTEMPT_PREFIX, "hash", "a host's current boot attempt"),
    (EXPORT_STATUS_PREFIX, "hash", "what the blockexport service sees of an export"),
)


def shape_of(key: str, kinds) -> tuple[str, str] | None:
    """(what the key is, the Redis type it must have) for a bootyard key, or None if it matches
    no shape (an inventory object of one of ``kinds`` is a hash)."""
    found = split_object_key(key, kinds)
    if found is not None:
        return f"a {found[0]} object", "hash"
    for shape, redis_type, what in SHAPES:
        if key == shape or (shape.endswith(":") and key.startswith(shape) and key != shape):
            return what, redis_type
    return None
