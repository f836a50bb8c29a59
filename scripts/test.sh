#!/usr/bin/env bash
# The whole test suite: install what it needs, build, run every test (unit, store contract, CLI, real VMs
# under real qemu and a real systemd --user, etcd). Needs root: the tests make network namespaces, bridges
# and taps of their own, and mount what systemd needs inside their own mount namespace.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# Tests are code too: type-checked with the sources, and linted.
npm run lint --silent
mkdir -p .cache
set +e
npx vitest run --reporter=default --reporter=json --outputFile.json=.cache/vitest.json "$@"
rc=$?
set -e
# One plain closing line: "N passed, N failed".
node -e '
  const r = JSON.parse(require("fs").readFileSync(".cache/vitest.json", "utf8"));
  console.log(`${r.numPassedTests} passed, ${r.numFailedTests} failed` + (r.numPendingTests ? `, ${r.numPendingTests} skipped` : ""));
' || true
exit "$rc"
