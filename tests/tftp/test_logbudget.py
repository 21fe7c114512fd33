"""shared.logbudget on a fake clock: the lines any client can cause (TFTP refusals) are bounded
per source and summarised (issue 13 F13)."""

from __future__ import annotations

from shared.logbudget import OTHER_SOURCES, LogBudget


def test_each_source_gets_its_burst_per_interval_and_the_rest_is_summarised():
    budget = LogBudget(burst=3, interval=60.0)
    passed = [budget.allow("198.18.0.10", "path", 0.1 * i) for i in range(10)]
    assert passed == [True] * 3 + [False] * 7
    assert budget.allow("198.18.0.11", "write", 1.0)      # another source has its own budget
    assert budget.summary_due == 60.0
    assert budget.summary(59.9) is None                   # not before its time
    assert not budget.allow("198.18.0.10", "mode", 30.0)
    assert budget.summary(60.0) == {"held": 8, "sources": 1, "reasons": "mode:1,path:7",
                                    "top_source": "198.18.0.10", "top_source_held": 8,
                                    "burst": 3, "interval_s": 60.0}
    assert budget.summary(61.0) is None and budget.summary_due is None  # counted once
    # a new interval: the source's budget is back
    assert [budget.allow("198.18.0.10", "path", 60.0 + i) for i in range(4)] == \
        [True, True, True, False]
    assert budget.summary_due == 120.0


def test_memory_is_bounded_whatever_the_sources():
    budget = LogBudget(burst=1, interval=60.0, max_sources=4)
    allowed = [budget.allow(f"198.18.1.{i}", "path", 1.0) for i in range(10)]
    assert allowed == [True] * 4 + [False] * 6            # past max_sources: held
    for i in range(10):
        budget.allow(f"198.18.1.{i}", "path", 2.0)
    fields = budget.summary(61.0)                         # the interval began at 1.0
    assert fields["held"] == 16 and fields["sources"] == 5  # 4 and "other"
    assert fields["top_source"] == OTHER_SOURCES
