#!/usr/bin/env bash
# Build the test guest: Debian's cloud kernel + a busybox initramfs (scripts/test-guest/init).
# Prints the output directory, which holds vmlinuz and initramfs.gz. Cached: rebuilt only when the
# kernel, busybox, the init script or this builder change. Installs its Debian packages when missing (root).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${UNCLOUD_VM_GUEST_DIR:-$root/.cache/test-guest}

need=()
for p in linux-image-cloud-amd64 busybox-static cpio kmod; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if [ "${#need[@]}" -gt 0 ]; then
  echo "build-test-guest: installing ${need[*]}" >&2
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

kernel=$(ls -1 /boot/vmlinuz-*-cloud-amd64 | sort -V | tail -n 1)
kver=${kernel#/boot/vmlinuz-}
mods=(virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci failover net_failover virtio_net virtio_blk cdrom isofs button evdev)

key=$( { echo "$kver"; sha256sum "$kernel" /bin/busybox "$root/scripts/test-guest/init" "$0"; } | sha256sum | cut -c1-16)
if [ -f "$out/key" ] && [ "$(cat "$out/key")" = "$key" ] && [ -f "$out/vmlinuz" ] && [ -f "$out/initramfs.gz" ]; then
  echo "$out"
  exit 0
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work"/{bin,dev,proc,sys,etc,lib/modules,tmp}
cp /bin/busybox "$work/bin/busybox"
for applet in $("$work/bin/busybox" --list); do
  [ "$applet" = busybox ] || ln -s busybox "$work/bin/$applet"
done
for m in "${mods[@]}"; do
  f=$(find "/lib/modules/$kver/kernel" -name "$m.ko" -o -name "$m.ko.xz" -o -name "$m.ko.zst" | head -n 1)
  [ -n "$f" ] || { echo "build-test-guest: module $m not found for $kver" >&2; exit 1; }
  case "$f" in
    *.xz) xz -dc "$f" > "$work/lib/modules/$m.ko" ;;
    *.zst) zstd -dcq "$f" > "$work/lib/modules/$m.ko" ;;
    *) cp "$f" "$work/lib/modules/$m.ko" ;;
  esac
done
install -m 0755 "$root/scripts/test-guest/init" "$work/init"

mkdir -p "$out"
(cd "$work" && find . -print0 | cpio --null -o -H newc --quiet) | gzip -1 > "$out/initramfs.gz.tmp"
cp "$kernel" "$out/vmlinuz.tmp"
mv "$out/initramfs.gz.tmp" "$out/initramfs.gz"
mv "$out/vmlinuz.tmp" "$out/vmlinuz"
echo "$key" > "$out/key"
echo "build-test-guest: built $out (kernel $kver)" >&2
echo "$out"
