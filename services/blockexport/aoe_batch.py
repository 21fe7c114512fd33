"""One batch of an AoE export's I/O thread (services/blockexport/server.py): the storage work
and the replies, each reply sent as soon as what it answers is done.

Order within a batch: reads, then each host's writes in one ``Disk.write`` (one sync per host:
durable before answered), then flushes. A read's reply leaves as soon as it is read, not after
the batch's writes and their sync (ATA gives no order between outstanding commands, and a read
queued behind a write in the same batch is read before it, as it always was here); a host's
write replies leave after that host's sync, before the next host's writes.
"""

from __future__ import annotations

from collections.abc import Sequence

from services.blockexport import codec, metrics as m, policy
from services.blockexport.policy import Read, Write
from services.blockexport.storage import StorageError


def reply(served, pending, ok: bool, data=b"") -> tuple[bytes, object]:
    """(head, data) of the reply to ``pending``: from its wire fields when the fast path took
    it (aoe_writes.py), else the policy's reply frame (``data`` then empty)."""
    if pending.wire is not None:
        tag, aflags, count, lba = pending.wire
        return policy.io_head(served.target, pending.src, tag, aflags, count, lba,
                              type(pending.outcome), ok), data
    outcome = pending.outcome
    answer = policy.io_done(served.target, outcome, bytes(data)) if ok else \
        policy.io_failed(served.target, outcome)
    return codec.encode(answer.frame), b""


def run_batch(served, batch: Sequence, send_parts) -> list[str | None]:
    """Do one batch's I/O (in the export's I/O thread), calling ``send_parts(head, data)`` for
    each reply as soon as it is known. Returns the failure reason or None per request, in
    order."""
    target = served.target
    failures: list[str | None] = [None] * len(batch)
    writes: dict[bytes, list[int]] = {}
    flushes: list[int] = []
    for i, pending in enumerate(batch):
        outcome = pending.outcome
        if isinstance(outcome, Read):
            try:
                data = served.view(pending.src).read(outcome.offset, outcome.length)
                send_parts(*reply(served, pending, True, data))
            except (OSError, StorageError) as exc:
                failures[i] = reason(exc)
                send_parts(*reply(served, pending, False))
        elif isinstance(outcome, Write):
            writes.setdefault(pending.src, []).append(i)
        else:
            flushes.append(i)
    for mac, indexes in writes.items():
        failure = None
        try:
            served.view(mac).write([(batch[i].outcome.offset, batch[i].outcome.data)
                                    for i in indexes])
            m.SYNCS.labels(target.name).inc()
        except (OSError, StorageError) as exc:
            failure = reason(exc)
        for i in indexes:
            failures[i] = failure
            send_parts(*reply(served, batch[i], failure is None))
    for i in flushes:
        try:
            served.view(batch[i].src).flush()
            m.SYNCS.labels(target.name).inc()
        except (OSError, StorageError) as exc:
            failures[i] = reason(exc)
        send_parts(*reply(served, batch[i], failures[i] is None))
    return failures


def reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc)
