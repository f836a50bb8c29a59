#!/bin/sh
# Rendered by uncloud-vm for VM {{vm}}: the qemu command. exec makes qemu this process, so under a systemd
# unit qemu is the service's main process and nothing else stays resident.
# --gate (a launcher started us): wait on fd 3 until the launcher has recorded this process as the VM's
# qemu; if the launcher dies first, fd 3 closes and qemu never runs, so no qemu runs that no lease names.
# umask: the pidfile, QMP socket and serial log qemu creates are for their owner only (0600).
if [ "${1:-}" = --gate ]; then
  read -r go <&3 || exit 75
  [ "$go" = go ] || exit 75
  exec 3<&-
fi
umask 177
exec {{!command}}
