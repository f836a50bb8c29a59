#!/bin/sh
# Rendered by uncloud-vm for VM {{vm}}: the qemu command. exec makes qemu this process, so under a systemd
# unit qemu is the service's main process and nothing else stays resident.
exec {{!command}}
