#!/usr/bin/env bash
# The whole test suite: install what it needs, build, run every test (unit, store contract, CLI, real VMs).
# Needs root: the tests create network namespaces, bridges and taps of their own.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec npx vitest run "$@"
