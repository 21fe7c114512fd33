"""Who may fetch a host's secret-bearing files: its own address, or its per-host token.

A host's install files (kickstart, preseed, cloud-init) may hold password hashes and keys, so they
are served only when the request

1. carries the host's token (``?token=``): HMAC-SHA256 of the canonical MAC under
   ``http.token_secret``, hex; stateless, so nothing is stored and every worker agrees; or
2. comes from the host's reserved address (``host.ip``); or
3. comes from the address currently leased to that MAC (``leases.holder(ip)``: the lease
   contract ``bootyard:lease:<ip>`` with ``mac``, ``state == bound`` and ``expires`` in the
   future).

A MAC in the URL or in anaconda's ``X-RHN-Provisioning-MAC-0`` header only says *which* host is
asking; it never grants access on its own.
"""

from __future__ import annotations

import hashlib
import hmac


def host_token(secret: str, mac: str) -> str:
    """The per-host token: hex HMAC-SHA256 of the canonical MAC."""
    return hmac.new(secret.encode(), mac.encode(), hashlib.sha256).hexdigest()


class Access:
    """Decides whether a request may read a host's secret-bearing files."""

    def __init__(self, secret: str, inventory, leases) -> None:
        """``leases``: a :class:`shared.leases.Leases` (or its double ``StaticLeases``)."""
        self.secret = secret
        self.inventory = inventory
        self.leases = leases
        self._tokens: dict[str, str] = {}

    def token(self, mac: str) -> str:
        token = self._tokens.get(mac)
        if token is None:
            if len(self._tokens) > 100_000:
                self._tokens.clear()
            token = self._tokens[mac] = host_token(self.secret, mac)
        return token

    def allowed_now(self, mac: str, source_ip: str | None, token: str | None) -> str | None:
        """``token`` or ``reserved`` when the token or the host's reserved address allows the
        request (no I/O: the fast path asks this), else None (the lease may still allow it)."""
        if token and self.secret and hmac.compare_digest(
                self.token(mac).encode(), token.strip().lower().encode("utf-8", "replace")):
            return "token"
        if not source_ip:
            return None
        host = self.inventory.host(mac)
        if host is not None and host.ip == source_ip:
            return "reserved"
        return None

    async def allowed(self, mac: str, source_ip: str | None, token: str | None) -> str | None:
        """How the request is allowed (``token``, ``reserved``, ``lease``) or None if it is not.

        Raises InventoryUnavailable when only the lease could decide and Redis is down.
        """
        how = self.allowed_now(mac, source_ip, token)
        if how is not None or not source_ip:
            return how
        if await self.leases.holder(source_ip) == mac:
            return "lease"
        return None
