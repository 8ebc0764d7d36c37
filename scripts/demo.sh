#!/usr/bin/env bash
# First command of the README: set up, build, and watch the built-in DruID simulator.
# Extra arguments go to `bulkwatch demo` (e.g. --for 30s, --sink file:events.jsonl).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
swift build --product bulkwatch >&2   # stdout belongs to the events
state="$(mktemp -d)/demo.db"
exec .build/debug/bulkwatch demo --state "$state" "$@"
