#!/usr/bin/env bash
# Build GRUB for UEFI HTTP boot: one x86_64-efi image with the network modules built in and a
# one-line configuration that hands over to the machine's own configuration, rendered by the
# HTTP service at /boot/grub.cfg?mac=<its MAC> (docs/http.md "GRUB over UEFI HTTP boot").
#
#   scripts/grub-http-image.sh <output.efi> [grub-module-dir]
#
# The image has no prefix of its own: GRUB takes the server (and port) it was loaded from as
# its root, so the image works on any bootyard server without being rebuilt.
set -euo pipefail
out=${1:?usage: grub-http-image.sh <output.efi> [grub-module-dir]}
dir=${2:-/usr/lib/grub/x86_64-efi}
mkimage=${GRUB_MKIMAGE:-grub-mkimage}
cfg=$(mktemp)
trap 'rm -f "$cfg"' EXIT
# shellcheck disable=SC2016  # GRUB expands these, not the shell
printf '%s\n' 'configfile "($root)/boot/grub.cfg?mac=${net_default_mac}"' > "$cfg"
mkdir -p "$(dirname "$out")"
"$mkimage" -O x86_64-efi -d "$dir" -p '' -c "$cfg" -o "$out.tmp" \
    http efinet tftp net normal linux configfile echo test sleep chain efi_gop efi_uga \
    all_video gzio halt reboot
chmod 0644 "$out.tmp"
mv "$out.tmp" "$out"
