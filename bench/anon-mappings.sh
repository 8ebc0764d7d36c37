#!/usr/bin/env bash
# bench/anon-mappings.sh PID: threads by name and the anonymous mappings (RSS / size kB) of a process, biggest first.
# Called by bench/idle-breakdown.sh with ANON=1: the idle footprint work reads malloc arenas and stacks off it.
pid=${1:?usage: bench/anon-mappings.sh PID}
echo "threads: $(ls /proc/$pid/task | wc -l) ($(cat /proc/$pid/task/*/comm | sort | uniq -c | tr -s ' ' | tr '\n' ','))"
python3 - "$pid" <<'PY'
import re, sys
rows = []; name = None
for line in open(f"/proc/{sys.argv[1]}/smaps"):
    m = re.match(r"^([0-9a-f]+)-([0-9a-f]+) \S+ \S+ \S+ \S+\s*(\S*)", line)
    if m:
        size = (int(m.group(2), 16) - int(m.group(1), 16)) // 1024; name = m.group(3) or "[anon]"; continue
    if line.startswith("Rss:") and name == "[anon]":
        rss = int(line.split()[1])
        if rss: rows.append((rss, size))
rows.sort(reverse=True)
print("anonymous mappings, rss kB / size kB:", ", ".join(f"{r}/{s}" for r, s in rows[:14]), f"... ({len(rows)} in all, {sum(r for r, _ in rows)} kB)")
PY
