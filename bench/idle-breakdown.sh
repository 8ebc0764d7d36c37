#!/usr/bin/env bash
# bench/idle-breakdown.sh BINARY [NAME=VALUE ...]: what an idle `bulkwatch run` holds resident.
#
# Starts `BINARY simulate` with 1,000 items that do not change, then `BINARY run --interval 1s` with a file sink
# against it (with the NAME=VALUE pairs in its environment, e.g. MALLOC_ARENA_MAX=2), waits 15 s (first poll and its
# 1,000 created events, then idle polls), samples VmRSS / RssAnon / RssFile every second for 15 s, prints their
# medians and the smaps breakdown by mapping (bench/smaps.py). Used for BENCHMARKS.md's idle footprint figures:
# run it once per build variant. It measures; it never judges. More detail on request: SMAPS_FULL=1 (every
# mapping), ANON=1 (threads and anonymous mappings), SECTIONS=1 (the executable's resident pages by ELF section
# and by Swift module, bench/resident_sections.py; needs root for /proc/PID/pagemap).
set -euo pipefail

binary=${1:?usage: bench/idle-breakdown.sh BINARY [NAME=VALUE ...]}
shift
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d /tmp/bulkwatch-idle-XXXXXX)
port=$((20000 + RANDOM % 20000))

cleanup() {
    [ -n "${watcher:-}" ] && kill "$watcher" 2>/dev/null && wait "$watcher" 2>/dev/null || true
    [ -n "${simulator:-}" ] && kill "$simulator" 2>/dev/null && wait "$simulator" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# --rate 0 and huge step/retention: nothing is created or advances, so every poll sees the same 1,000 items.
# The simulator runs from a copy of the binary: a page that two processes map is never paged out (StartupPages),
# and a daemon in production does not share its binary's pages with a simulator.
cp "$binary" "$work/simulator"
"$work/simulator" simulate --port "$port" --initial 1000 --rate 0 --step 1e9 --retention 1e9 --log-level warning \
    >/dev/null 2>&1 &
simulator=$!
sleep 2

env "$@" BULKWATCH_CLIENT_SECRET=demo-secret "$binary" run \
    --endpoint "http://127.0.0.1:$port/activityid/v1/user/bulk" --token-url "http://127.0.0.1:$port/oauth2/token" \
    --client-id bulkwatch-demo --interval 1s --sink "file:$work/events.jsonl" --state "$work/state.db" \
    --log-level warning </dev/null >/dev/null 2>"$work/stderr" &
watcher=$!
sleep 15
kill -0 "$watcher" 2>/dev/null || { echo "bulkwatch run ended early:"; cat "$work/stderr"; exit 1; }

field() { awk -v key="$1:" '$1 == key { print $2 }' "/proc/$watcher/status"; }
rss=() anon=() file=()
for _ in $(seq 15); do
    rss+=("$(field VmRSS)") anon+=("$(field RssAnon)") file+=("$(field RssFile)")
    sleep 1
done
median() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { printf "%.1f", v[int((NR + 1) / 2)] / 1000 }'; }
echo "binary $binary ($(stat -c %s "$binary") bytes) ${*:+env $*}"
echo "events delivered: $(wc -l <"$work/events.jsonl"); VmRSS median $(median "${rss[@]}") MB" \
    "(RssAnon $(median "${anon[@]}"), RssFile $(median "${file[@]}")); VmHWM $(field VmHWM) kB"
python3 "$here/smaps.py" --group --top 14 "$watcher"
[ -n "${SMAPS_FULL:-}" ] && python3 "$here/smaps.py" --top 40 "$watcher"
[ -n "${ANON:-}" ] && "$here/anon-mappings.sh" "$watcher"
[ -n "${SECTIONS:-}" ] && python3 "$here/resident_sections.py" --symbols --top 25 "$watcher"
exit 0
