.PHONY: bench-mirror test-mirrorsync

## bench-mirror: bootyard's mirror sync (snapshot, checks, atomic publish) vs plain rsync -a --delete,
## first and incremental sync of a synthetic upstream (BENCH_MIRROR_FILES=10000, BENCH_MIRROR_MIB=2048,
## BENCH_MIRROR_CHANGED=0.01 settable)
bench-mirror: install
	flock /tmp/bootyard-bench.lock $(PY) scripts/bench_mirror.py

## test-mirrorsync: the mirror sync service's tests
test-mirrorsync: install
	$(PY) -m pytest tests/mirrorsync $(PYTEST_ARGS)
