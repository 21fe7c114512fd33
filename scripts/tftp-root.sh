#!/usr/bin/env bash
# Assemble bootyard's TFTP root from Debian's packages (docs/tftp.md "The root").
#
#   scripts/tftp-root.sh <root-dir> [cache-dir]
#
# Boot loaders come from the installed packages when present, else from `apt-get download` +
# `dpkg -x` into <cache-dir> (default ~/.cache/bootyard/debs); nothing is installed system-wide.
# TFTP_ROOT_DOWNLOAD=1 takes the download path even for installed packages.
#   ipxe             -> undionly.kpxe (BIOS), ipxe.efi, snponly.efi (UEFI), ipxe.lkrn, and
#                       images/ipxe.efi: the default UEFI HTTP boot file (dhcp.http_boot_x64,
#                       served by HTTP as /images/ipxe.efi from the images directory)
#   pxelinux         -> pxelinux.0, lpxelinux.0
#   syslinux-common  -> ldlinux.c32 libcom32.c32 libutil.c32 menu.c32 vesamenu.c32 chain.c32 reboot.c32
#   grub-efi-amd64-bin, grub-pc-bin (+ grub-common's grub-mknetdir)
#                    -> boot/grub/x86_64-efi/core.efi, boot/grub/i386-pc/core.0 and their modules;
#                       grub-mknetdir also writes boot/grub/<platform>/grub.cfg ("source
#                       boot/grub/grub.cfg"), and bootyard renders boot/grub/grub.cfg* per host;
#                       images/grubx64-http.efi: GRUB for UEFI HTTP boot (scripts/grub-http-image.sh)
# Per-host configs (pxelinux.cfg/*, boot/grub/grub.cfg*, boot.ipxe) are NOT written here: the
# service renders them from the inventory. Kernels and initrds go under <root>/images/.
set -euo pipefail

root=${1:?usage: tftp-root.sh <root-dir> [cache-dir]}
cache=${2:-${XDG_CACHE_HOME:-$HOME/.cache}/bootyard/debs}
mkdir -p "$root" "$root/images"

# Print the directory a package's files live under: / when installed, else its unpacked tree.
tree_of() {
    local pkg=$1
    if [ -z "${TFTP_ROOT_DOWNLOAD:-}" ] && dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        echo /
        return
    fi
    local dir="$cache/$pkg"
    if [ ! -d "$dir" ]; then
        mkdir -p "$cache"
        (cd "$cache" && apt-get download "$pkg" >&2)
        dpkg -x "$(ls -t "$cache/${pkg}"_*.deb | head -n1)" "$dir"
    fi
    echo "$dir"
}

copy() {  # copy <tree> <path-in-package> <dest-name>
    local src="$1/$2"
    if [ ! -f "$src" ]; then
        echo "tftp-root: $src is missing (package layout changed?)" >&2
        exit 1
    fi
    install -m 0644 "$src" "$root/$3"
}

ipxe=$(tree_of ipxe)
for f in undionly.kpxe ipxe.efi snponly.efi ipxe.lkrn; do copy "$ipxe" "usr/lib/ipxe/$f" "$f"; done
copy "$ipxe" usr/lib/ipxe/ipxe.efi images/ipxe.efi

pxelinux=$(tree_of pxelinux)
copy "$pxelinux" usr/lib/PXELINUX/pxelinux.0 pxelinux.0
copy "$pxelinux" usr/lib/PXELINUX/lpxelinux.0 lpxelinux.0
syslinux=$(tree_of syslinux-common)
for f in ldlinux.c32 libcom32.c32 libutil.c32 menu.c32 vesamenu.c32 chain.c32 reboot.c32; do
    copy "$syslinux" "usr/lib/syslinux/modules/bios/$f" "$f"
done

grub_common=$(tree_of grub-common)
mknetdir=$grub_common/usr/bin/grub-mknetdir
mkimage_dir=$grub_common/usr/bin
if [ "$grub_common" != / ]; then
    # grub-mknetdir from a dpkg -x tree needs grub-mkimage on PATH and libefivar/libefiboot
    # (lab-facts.md #11); fetch those libraries the same way.
    export PATH="$mkimage_dir:$PATH"
    for lib in libefivar1 libefiboot1; do
        export LD_LIBRARY_PATH="$(tree_of $lib)/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}"
    done
fi
for pair in grub-efi-amd64-bin:x86_64-efi grub-pc-bin:i386-pc; do
    pkg=${pair%%:*} platform=${pair#*:}
    tree=$(tree_of "$pkg")
    "$mknetdir" --net-directory="$root" --subdir=boot/grub -d "$tree/usr/lib/grub/$platform" \
        >/dev/null
    if [ "$platform" = x86_64-efi ]; then
        GRUB_MKIMAGE="$mkimage_dir/grub-mkimage" bash "$(dirname "$0")/grub-http-image.sh" \
            "$root/images/grubx64-http.efi" "$tree/usr/lib/grub/$platform"
    fi
done

echo "tftp-root: $root ready:"
(cd "$root" && ls -1 *.kpxe *.efi *.0 boot/grub/*/core.* images/*.efi 2>/dev/null | sed 's/^/  /')
