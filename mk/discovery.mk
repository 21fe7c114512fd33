# The discovery image (issue 20, docs/discovery.md): what unknown machines boot to report their
# hardware. Built from Debian's packages with the lab's builder; no root needed.
.PHONY: discovery-image

## discovery-image: write IMAGES/discovery/{vmlinuz,initrd.img} (IMAGES: http.images_root)
IMAGES ?= /var/lib/bootyard/images
discovery-image: install
	$(PY) -m lab.discovery_image --images $(IMAGES)
