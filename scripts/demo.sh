#!/usr/bin/env bash
# The demo: show the qemu command uncloud-vm would run for a 1 GiB, 2-core VM. A dry run: nothing is reserved.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
state=$(mktemp -d)
trap 'rm -rf "$state"' EXIT
node dist/cli/main.js --state-dir "$state/state" --run-dir "$state/run" start --dry-run --memory 1024 --cores 2 --accel tcg
