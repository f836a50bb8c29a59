#!/usr/bin/env bash
# The demo: boot a real guest (TCG) through uncloud-vm on a private bridge in a network namespace of its own,
# show what the guest printed (its MAC) and what the pool holds, stop the VM, and leave nothing behind.
# Run as root on Debian 12; installs what it needs on first run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
guest=$(bash scripts/build-test-guest.sh | tail -n 1)

ns="uncloud-demo-$$"
tmp=$(mktemp -d)
launcher=
cleanup() {
  [ -n "$launcher" ] && kill "$launcher" 2>/dev/null && wait "$launcher" 2>/dev/null || true
  ip netns del "$ns" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
ip netns add "$ns"
ip netns exec "$ns" ip link add br0 type bridge
ip netns exec "$ns" ip link set br0 up

uvm=(ip netns exec "$ns" node bin/uncloud-vm.cjs --state-dir "$tmp/state" --run-dir "$tmp/run")
args=(start --name demo --memory 1024 --cores 2 --accel tcg --kernel "$guest/vmlinuz" --initrd "$guest/initramfs.gz"
      --append "console=ttyS0 panic=-1 quiet" --no-reboot)

echo "== the qemu command (dry run)"
"${uvm[@]}" "${args[@]}" --dry-run
echo
echo "== booting the demo guest (namespace $ns, bridge br0)"
"${uvm[@]}" "${args[@]}" &   # ip netns exec execs node: $! is the launcher
launcher=$!
serial="$tmp/state/logs/demo/serial.log"   # kept after the VM ends: uncloud-vm logs demo
for _ in $(seq 1 300); do
  grep -q '^UNCLOUD-READY' "$serial" 2>/dev/null && break
  kill -0 "$launcher" 2>/dev/null || { echo "demo: the VM ended early" >&2; exit 1; }
  sleep 0.1
done
grep -q '^UNCLOUD-READY' "$serial" || { echo "demo: the guest did not boot within 30 s" >&2; exit 1; }
echo "== the guest says:"
grep '^UNCLOUD-' "$serial"
echo "== uncloud-vm list:"
"${uvm[@]}" list
echo "== stopping the VM"
kill -TERM "$launcher"
wait "$launcher" || true
launcher=
echo "== after the VM ended: held MACs and taps in the namespace"
"${uvm[@]}" mac list
ip netns exec "$ns" ip -br link show | grep -c '^uc' | sed 's/^/taps left: /' || true
