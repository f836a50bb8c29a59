#!/bin/sh
# Rendered by uncloud-vm for VM {{vm}}, NIC {{index}}. QEMU runs it with the tap name as $1.
# Gives the tap a host-side MAC (first octet fe) so the bridge never adopts the guest's MAC,
# attaches it to the bridge and brings it up.
set -eu
tap="$1"
bridge={{bridge}}
if [ ! -d "/sys/class/net/$bridge/bridge" ]; then
  echo "uncloud-vm ifup: bridge $bridge does not exist" >&2
  exit 1
fi
ip link set dev "$tap" address {{tapMac}}
ip link set dev "$tap" master "$bridge"
ip link set dev "$tap" up
