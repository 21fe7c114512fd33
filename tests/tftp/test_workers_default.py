"""tftp.workers = 0 (the default): one worker process per CPU the service may run on, never more
than 8 nor max_transfers (each worker needs a slot); a number set is kept as it is."""

from __future__ import annotations

import os

from services.tftp.__main__ import AUTO_WORKERS_MAX, worker_count
from services.tftp.settings import TftpSection


def test_the_default_is_one_worker_per_cpu_the_process_may_use():
    assert TftpSection().workers == 0
    cpus = min(len(os.sched_getaffinity(0)), AUTO_WORKERS_MAX)
    assert worker_count(0, 500) == cpus
    assert worker_count(0, 1) == 1              # one slot: one process
    assert worker_count(0, max(1, cpus - 1)) == max(1, cpus - 1)


def test_a_worker_count_set_is_kept():
    assert worker_count(1, 500) == 1
    assert worker_count(3, 500) == 3
    assert worker_count(4, 2) == 4              # refused by serve(), with the reason
