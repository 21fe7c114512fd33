#!/usr/bin/env bash
# Installs the Debian packages bootyard's tests, lab and benchmarks use: real Redis, the protocol
# peers our services are checked against, and the tools the network lab needs.
# Daemons are never started by the install (policy-rc.d answers 101): every server in a test runs
# inside a namespace the test creates, on ports the test chooses.
set -euo pipefail
if [ "$(id -u)" != 0 ]; then
    echo "install-debian-packages: not root, skipping apt (install the packages listed in $0 by hand)" >&2
    exit 0
fi
PACKAGES=(
    redis-server redis-tools          # the inventory, leases and events store
    iproute2 iputils-ping procps psmisc  # network namespaces, veth, bridges, tc netem
    busybox-static udhcpc isc-dhcp-client kea-dhcp4-server kea-admin dnsmasq-base  # DHCP peers (perfdhcp is in kea-admin)
    tftp-hpa tftpd-hpa atftp curl wget  # TFTP and HTTP peers (atftpd conflicts with tftpd-hpa:
                                      # the TFTP benchmark unpacks it with dpkg -x instead)
    nginx-light wrk                   # HTTP peer and load client
    vblade                            # AoE peer (the block export benchmark and comparisons)
    libiscsi-bin tgt open-iscsi       # iSCSI peers: iscsi-test-cu/iscsi-perf/iscsi-ls, tgtd, iscsiadm/iscsistart
    libiscsi-dev gcc libc6-dev        # make bench-iscsi builds its libiscsi write client (iscsi-perf only reads)
    dosfstools mtools                 # an EFI system disk without loop devices (iPXE EFI sanboot test)
    redis-sentinel                    # Redis failover tests (3 sentinels, a master and a replica)
    openipmi ipmitool                 # power control: OpenIPMI's BMC simulator (ipmi_sim) and the IPMI client
    tshark tcpdump                    # packet captures
    qemu-system-x86 ipxe-qemu ovmf ipxe  # the QEMU lab: SeaBIOS + iPXE ROM, OVMF, iPXE binaries
    grub-efi-amd64-bin grub-pc-bin grub-common pxelinux syslinux-common  # boot loaders served by TFTP
    squashfs-tools cpio xz-utils zstd # live root images and initramfs building
    chromium chromium-driver          # the web console's browser test (tests/http/test_console_browser.py)
    docker.io debootstrap prometheus  # make compose-test: a private dockerd, locally built base
                                      # images (no registry), Prometheus + promtool for dashboards
    prometheus-alertmanager           # the alert tests (tests/deploy/test_alerts_live.py: a real
                                      # Prometheus + Alertmanager) and amtool check-config
    rsync                             # mirror sync: the service's transport and the tests' upstream daemon
    apt-utils dpkg-dev gnupg          # mirror sync tests: a real apt repository (apt-ftparchive, dpkg-deb, InRelease)
    createrepo-c rpm dnf dnf-plugins-core  # mirror sync tests: a real yum repository and the dnf client
    libarchive-tools xorriso          # bootyard image import reads ISOs with bsdtar; the tests make ISOs with xorriso
    python3-dev                       # make install compiles the DHCP packet path with mypyc (gcc above; optional)
    valgrind                          # scripts/bench/lease_instructions.py: Redis's instructions per DHCP exchange
)
missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
    echo "install-debian-packages: all ${#PACKAGES[@]} packages present"
    exit 0
fi
echo "install-debian-packages: installing ${missing[*]}"
policy=/usr/sbin/policy-rc.d
had_policy=0; [ -e "$policy" ] && had_policy=1
if [ $had_policy = 0 ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy"; chmod 755 "$policy"
    trap 'rm -f "$policy"' EXIT
fi
export DEBIAN_FRONTEND=noninteractive
echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install-debian-packages: done"
