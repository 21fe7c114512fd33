# TFTP service targets (docs/tftp.md, docs/benchmarks.md).
TFTP_ROOT ?= $(CURDIR)/build/tftp-root
TFTP_DEB_CACHE ?= $(CURDIR)/build/debs

.PHONY: tftp-root bench-tftp test-tftp native-tftp

## native-tftp: compile the TFTP per-block path (session, codec) with mypyc, part of make install;
## without mypy or a C compiler it says so and the service runs the pure-Python modules
services/tftp/native.json: services/tftp/session.py services/tftp/codec.py scripts/build_native_tftp.py | $(VENV)/.installed
	$(PY) scripts/build_native_tftp.py
native-tftp: services/tftp/native.json
install: services/tftp/native.json

## tftp-root: assemble the TFTP root (iPXE, PXELINUX, GRUB via grub-mknetdir) in $(TFTP_ROOT)
tftp-root:
	bash scripts/tftp-root.sh $(TFTP_ROOT) $(TFTP_DEB_CACHE)

## test-tftp: the TFTP service's tests
test-tftp: install
	$(PY) -m pytest tests/tftp $(PYTEST_ARGS)

## bench-tftp: bootyard vs tftpd-hpa, dnsmasq and atftpd, same client, alternating (root); the
## 50-client round quiet and under a busy loop (ratio_50, ratio_50_loaded);
## BENCH_TFTP_ARGS="--workers 1 --concurrent-rounds 3" adds bootyard with tftp.workers=1
BENCH_TFTP_ARGS ?=
bench-tftp: install
	flock /tmp/bootyard-bench.lock $(PY) scripts/bench_tftp.py --cache $(TFTP_DEB_CACHE) $(BENCH_TFTP_ARGS)
