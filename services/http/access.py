"""Who may fetch a host's secret-bearing files: its own address, or its per-host token.

A host's install files (kickstart, preseed, cloud-init) may hold password hashes and keys, so they
are served only when the request

1. carries the host's token (``?token=``): HMAC-SHA256 of the canonical MAC under
   ``http.token_secret``, hex; stateless, so nothing is stored and every worker agrees; or
2. comes from the host's reserved address (``host.ip``); or
3. comes from the address currently leased to that MAC (lease contract: ``bootyard:lease:<ip>``
   with ``mac``, ``state == bound`` and ``expires`` in the future).

A MAC in the URL or in anaconda's ``X-RHN-Provisioning-MAC-0`` header only says *which* host is
asking; it never grants access on its own.
"""

from __future__ import annotations

import hashlib
import hmac
import time

from shared.store import redis_errors


def host_token(secret: str, mac: str) -> str:
    """The per-host token: hex HMAC-SHA256 of the canonical MAC."""
    return hmac.new(secret.encode(), mac.encode(), hashlib.sha256).hexdigest()


def token_matches(secret: str, mac: str, token: str | None) -> bool:
    if not token or not secret:
        return False
    return hmac.compare_digest(host_token(secret, mac), token.strip().lower())


def lease_is_current(lease: dict[str, str], mac: str, now: float) -> bool:
    try:
        expires = int(lease.get("expires", "0"))
    except ValueError:
        return False
    return lease.get("mac") == mac and lease.get("state") == "bound" and expires > now


async def lookup_lease(client, ip: str) -> dict[str, str]:
    """The lease hash for ``ip`` ({} if none). Raises InventoryUnavailable if Redis is down."""
    # TODO(merge): use shared.leases.lookup_ip
    with redis_errors("leases"):
        return await client.hgetall(f"bootyard:lease:{ip}")


async def list_leases(client) -> dict[str, dict[str, str]]:
    """Every lease hash by address (for the admin API)."""
    # TODO(merge): use shared.leases (the DHCP helper's module) to list leases
    with redis_errors("leases"):
        keys = [k async for k in client.scan_iter(match="bootyard:lease:*", count=1000)]
        keys = [k for k in keys if k.count(":") == 2 and k.split(":")[2].count(".") == 3]
        pipe = client.pipeline(transaction=False)
        for key in keys:
            pipe.hgetall(key)
        hashes = await pipe.execute() if keys else []
    return {k.split(":", 2)[2]: h for k, h in sorted(zip(keys, hashes)) if h}


class Access:
    """Decides whether a request may read a host's secret-bearing files."""

    def __init__(self, secret: str, inventory, redis_client) -> None:
        self.secret = secret
        self.inventory = inventory
        self.redis = redis_client

    def token(self, mac: str) -> str:
        return host_token(self.secret, mac)

    async def allowed(self, mac: str, source_ip: str | None, token: str | None) -> str | None:
        """How the request is allowed (``token``, ``reserved``, ``lease``) or None if it is not.

        Raises InventoryUnavailable when only the lease could decide and Redis is down.
        """
        if token_matches(self.secret, mac, token):
            return "token"
        if not source_ip:
            return None
        host = self.inventory.host(mac)
        if host is not None and host.ip == source_ip:
            return "reserved"
        lease = await lookup_lease(self.redis, source_ip)
        if lease and lease_is_current(lease, mac, time.time()):
            return "lease"
        return None
