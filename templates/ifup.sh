#!/bin/sh
# Rendered by uncloud-vm for VM {{vm}}, NIC {{index}}. QEMU runs it with the tap name as $1.
# Gives the tap a host-side MAC (first octet fe) so the bridge never adopts the guest's MAC, installs the
# anti-spoofing rules (frames from the tap must carry the NIC's MAC), attaches the tap and brings it up.
set -eu
tap="$1"
bridge={{bridge}}
guest_mac={{guestMac}}
filter={{filter}}
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
  # Values reach nft through printf arguments, never through the shell's parsing.
  printf 'table bridge uc_%s {\n chain from_guest {\n  type filter hook forward priority 0; policy accept;\n  iifname "%s" ether saddr != %s drop\n }\n chain to_host {\n  type filter hook input priority 0; policy accept;\n  iifname "%s" ether saddr != %s drop\n }\n}\n' \
    "$tap" "$tap" "$guest_mac" "$tap" "$guest_mac" | nft -f -
fi
ip link set dev "$tap" master "$bridge"
ip link set dev "$tap" up
