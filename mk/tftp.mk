# TFTP service targets (docs/tftp.md, docs/benchmarks.md).
TFTP_ROOT ?= $(CURDIR)/build/tftp-root
TFTP_DEB_CACHE ?= $(CURDIR)/build/debs

.PHONY: tftp-root bench-tftp test-tftp

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
