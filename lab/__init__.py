"""The QEMU boot lab: boot assets, VMs, the classic and bootyard stacks (see docs/lab.md)."""
