# The QEMU boot lab (issue 4): demo, boot-time benchmark, boot assets, golden packets.
# Needs root (network namespaces, tap devices); QEMU runs with TCG only.
.PHONY: demo lab-assets bench-boot test-e2e golden

## demo: boot a diskless machine from bootyard in a private lab and print its boot timeline
demo: install
	$(PY) -m lab demo --stack $${DEMO_STACK:-bootyard}

## lab-assets: fetch the Debian kernel/busybox and build the initramfs and squashfs (cached)
lab-assets: install
	$(PY) -m lab assets

## bench-boot: power-on-to-marker times, bootyard vs dnsmasq+nginx, alternating (docs/benchmarks.md)
bench-boot: install
	flock /tmp/bootyard-bench.lock $(PY) -m lab bench --rounds $${ROUNDS:-3}

## test-e2e: the QEMU scenarios only (tests/e2e)
test-e2e: install
	$(PY) -m pytest tests/e2e $(PYTEST_ARGS)

## golden: capture the golden DHCP/TFTP packets of real firmware again (tests/golden/)
golden: install
	BOOTYARD_REGEN_GOLDEN=1 $(PY) -m pytest tests/e2e/test_golden.py $(PYTEST_ARGS)
