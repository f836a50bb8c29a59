#!/bin/sh
# Rendered by uncloud-vm for VM {{vm}}: the qemu command. exec makes qemu this process, so under a systemd
# unit qemu is the service's main process and nothing else stays resident.
# A launcher reads this file in the shell it holds at a gate until it has recorded that process as the VM's
# qemu (src/qemu/qemu-process.ts): no qemu runs that no lease names.
# umask: the pidfile, QMP socket and serial log qemu creates are for their owner only (0600).
umask 177
exec {{!command}}
