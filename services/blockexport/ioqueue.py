"""The batches an export's I/O thread works through (AoE: services/blockexport/server.py; iSCSI:
iscsi_worker.py): everything queued when the thread wakes, executed (and synced) together."""

from __future__ import annotations

import queue
from collections.abc import Iterator


def batches(inbox: queue.SimpleQueue, limit: int, lists: bool = False) -> Iterator[list]:
    """What ``inbox`` holds, in batches of up to ``limit`` items, until the sentinel ``None``
    (the batch read before it still comes out). With ``lists`` every queued item is a list whose
    elements join the batch."""
    while True:
        item = inbox.get()
        if item is None:
            return
        batch = list(item) if lists else [item]
        last = False
        while len(batch) < limit:
            try:
                item = inbox.get_nowait()
            except queue.Empty:
                break
            if item is None:
                last = True
                break
            if lists:
                batch += item
            else:
                batch.append(item)
        yield batch
        if last:
            return
