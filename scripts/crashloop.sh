#!/usr/bin/env bash
# Crash loop (issue 6, part 3): SIGKILLs `bulkwatch run` at random moments while the simulator churns and a
# webhook receiver flaps, then checks journal integrity, every upstream change exactly once in the journal,
# every journal event delivered to the receiver, and a valid file sink. See docs/FAULTS.md.
#
#   scripts/crashloop.sh                 # 20 kills (about 30 s), what CI runs through the EndToEnd tests
#   scripts/crashloop.sh --kills 200     # the full run of the issue (about 3-4 minutes)
#   scripts/crashloop.sh --seed 42       # reproduce a run; --summary FILE writes the result as JSON
#   scripts/crashloop.sh --retain 2s     # the watchers also prune; the file sink is then the complete record
#
# BULKWATCH_BIN=path/to/bulkwatch skips the build. Needs python3 (standard library only).
set -euo pipefail
cd "$(dirname "$0")/.."

command -v python3 >/dev/null 2>&1 || { echo "crashloop: python3 is required" >&2; exit 1; }
bin="${BULKWATCH_BIN:-}"
if [ -z "$bin" ]; then
  swift build --product bulkwatch >&2
  bin="$(swift build --show-bin-path)/bulkwatch"
fi
[ -x "$bin" ] || { echo "crashloop: no bulkwatch binary at $bin" >&2; exit 1; }
exec python3 scripts/crashloop/crashloop.py --binary "$bin" "$@"
