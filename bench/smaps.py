#!/usr/bin/env python3
"""smaps.py PID [PID ...]: what a running process holds resident, by mapping (bulkwatch's footprint work).

Reads /proc/PID/smaps and prints, per mapped file (or [heap], [stack], anonymous), the resident kB split into
file-backed clean pages (shareable, reclaimable: text and read-only data of the binary and its libraries),
file-backed dirty/private pages (relocated data, GOT) and anonymous pages (heap, stacks, arenas), plus PSS.
Used by BENCHMARKS.md's idle breakdown; it measures, it never judges.

Options: --top N (rows, default 25), --group (fold libraries into families: Swift runtime, Foundation, ICU,
crypto, curl, SQLite, libc, ...).
"""

import argparse
import collections
import os
import re

FAMILIES = [
    (re.compile(r"lib_FoundationICU|libicu"), "ICU"),
    (re.compile(r"libFoundation(Essentials|Networking|XML)?\.so|libFoundation"), "Foundation"),
    (re.compile(r"libswift|libBlocksRuntime|libdispatch"), "Swift runtime + Dispatch"),
    (re.compile(r"libcrypto|libssl"), "OpenSSL (libcrypto/libssl)"),
    (re.compile(r"libcurl|libnghttp|libssh|librtmp|libpsl|libidn|libgssapi|libkrb|libk5|libldap|liblber|libsasl"
                r"|libbrotli|libzstd|libz\.|libgnutls|libnettle|libhogweed|libtasn|libunistring|libp11|libffi"
                r"|libkeyutils|libcom_err|libresolv"), "libcurl and its deps"),
    (re.compile(r"libsqlite"), "SQLite"),
    (re.compile(r"libc\.so|libm\.so|ld-linux|libpthread|libdl|librt|libgcc_s|libstdc\+\+|libuuid"), "libc, libstdc++"),
    (re.compile(r"python"), "Python"),
]


def family(name):
    for pattern, label in FAMILIES:
        if pattern.search(name):
            return label
    return name


def parse(pid):
    rows = collections.OrderedDict()
    current = None
    with open(f"/proc/{pid}/smaps") as smaps:
        for line in smaps:
            fields = line.split()
            if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
                name = fields[5] if len(fields) > 5 else "[anonymous]"
                current = rows.setdefault(name, collections.Counter())
                continue
            if current is None or not fields[0].endswith(":") or len(fields) < 2 or not fields[1].isdigit():
                continue
            current[fields[0][:-1]] += int(fields[1])
    return rows


def summarize(pid, top, group):
    with open(f"/proc/{pid}/cmdline", "rb") as handle:
        command = handle.read().split(b"\0")[0].decode(errors="replace")
    rows = parse(pid)
    folded = collections.OrderedDict()
    for name, counters in rows.items():
        key = family(os.path.basename(name)) if group and name.startswith("/") else name
        folded.setdefault(key, collections.Counter()).update(counters)
    table = []
    for name, c in folded.items():
        anonymous = c["Anonymous"]
        file_clean = c["Shared_Clean"] + c["Private_Clean"] if not name.startswith("[") else 0
        file_dirty = c["Rss"] - anonymous - file_clean
        table.append((c["Rss"], name, file_clean, max(file_dirty, 0), anonymous, c["Pss"]))
    table.sort(reverse=True)
    total = collections.Counter()
    for counters in rows.values():
        total.update(counters)
    print(f"pid {pid} ({command}): Rss {total['Rss'] / 1000:.1f} MB, Pss {total['Pss'] / 1000:.1f} MB, "
          f"Anonymous {total['Anonymous'] / 1000:.1f} MB, file-backed {(total['Rss'] - total['Anonymous']) / 1000:.1f} MB"
          " (MB = 1000 kB of smaps)")
    print(f"{'Rss kB':>8} {'file clean':>10} {'file dirty':>10} {'anon':>8} {'Pss kB':>8}  mapping")
    for rss, name, clean, dirty, anonymous, pss in table[:top]:
        print(f"{rss:>8} {clean:>10} {dirty:>10} {anonymous:>8} {pss:>8}  {name}")
    rest = table[top:]
    if rest:
        print(f"{sum(r[0] for r in rest):>8} {sum(r[2] for r in rest):>10} {sum(r[3] for r in rest):>10} "
              f"{sum(r[4] for r in rest):>8} {sum(r[5] for r in rest):>8}  ({len(rest)} more)")


def main():
    parser = argparse.ArgumentParser(description="Resident memory of a process by mapping (/proc/PID/smaps).")
    parser.add_argument("pids", nargs="+", type=int)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--group", action="store_true", help="fold libraries into families")
    args = parser.parse_args()
    for pid in args.pids:
        summarize(pid, args.top, args.group)
        print()


if __name__ == "__main__":
    main()
