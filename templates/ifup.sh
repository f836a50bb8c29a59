#!/bin/sh
# Rendered by uncloud-vm for VM {{vm}}, NIC {{index}}. QEMU runs it with the tap name as $1.
# Gives the tap a host-side MAC (first octet fe) so the bridge never adopts the guest's MAC, installs the
# NIC guard (source MAC, no RA/redirect/DHCP server replies, allowed IP sources and neighbour
# advertisements) in one nft transaction, attaches the tap and brings it up.
set -eu
tap="$1"
iface={{iface}}
bridge={{bridge}}
filter={{filter}}
if [ "$tap" != "$iface" ]; then
  echo "uncloud-vm ifup: expected interface $iface, got $tap" >&2
  exit 1
fi
if [ ! -d "/sys/class/net/$bridge/bridge" ]; then
  echo "uncloud-vm ifup: bridge $bridge does not exist" >&2
  exit 1
fi
ip link set dev "$tap" address {{tapMac}}
if [ "$filter" = on ]; then
  if ! command -v nft >/dev/null 2>&1; then
    echo "uncloud-vm ifup: nft not found: install nftables, or pass --nic ...,filter=off" >&2
    exit 1
  fi
  # The batches were rendered from parsed values: nothing a user typed is shell or nft syntax here.
  guard={{guard}}
  unguard={{unguard}}
  # Marked before it is installed: a later claim of this tap runs nft to look for a stale guard only if marked.
  mark={{guardMark}}
  mkdir -p -m 700 "${mark%/*}"
  : >"$mark"
  printf '%s' "$guard" | nft -f -
  # Should the tap not come up, its guard goes with it.
  trap 'printf "%s" "$unguard" | nft -f - 2>/dev/null' EXIT
fi
ip link set dev "$tap" master "$bridge"
ip link set dev "$tap" up
trap - EXIT
