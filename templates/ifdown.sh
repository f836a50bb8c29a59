#!/bin/sh
# Rendered by uncloud-vm for VM {{vm}}, NIC {{index}}. QEMU runs it with the tap name as $1 when the VM ends.
# Detaches the tap from its bridge, removes it and its guard (one nft transaction). For a detached VM, it
# also gives the NIC's MAC back.
set -u
tap="$1"
ip link set dev "$tap" down 2>/dev/null || true
ip link set dev "$tap" nomaster 2>/dev/null || true
ip link delete dev "$tap" 2>/dev/null || true
if [ {{filter}} = on ]; then
  # Unmarked once the guard is gone (nic-guard.ts removeStaleGuard).
  if printf '%s' {{unguard}} | nft -f - 2>/dev/null; then rm -f {{guardMark}}; fi
fi
{{!afterDown}}
exit 0
