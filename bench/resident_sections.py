#!/usr/bin/env python3
"""resident_sections.py PID [--symbols]: which parts of a running process's own executable are resident.

smaps says how much of the binary is in RAM, not which part. This reads /proc/PID/pagemap (root: the
present bit of every page of the executable's mappings) and attributes each resident page to the ELF section
it lies in (readelf -SW), and with --symbols to the Swift module of the symbol it lies in (nm -n --defined-only,
then the module name of the mangled symbol: $s<len><Module>...). Used for BENCHMARKS.md's idle footprint
figures; it measures, it never judges.
"""

import argparse
import bisect
import collections
import os
import re
import struct
import subprocess

PAGE = os.sysconf("SC_PAGE_SIZE")


def executable_mappings(pid):
    exe = os.readlink(f"/proc/{pid}/exe")
    mappings = []
    with open(f"/proc/{pid}/maps") as maps:
        for line in maps:
            fields = line.split()
            if len(fields) >= 6 and fields[5] == exe:
                start, end = (int(x, 16) for x in fields[0].split("-"))
                mappings.append((start, end, int(fields[2], 16)))
    return exe, mappings


def resident_pages(pid, mappings):
    present = []
    with open(f"/proc/{pid}/pagemap", "rb") as pagemap:
        for start, end, offset in mappings:
            pagemap.seek(start // PAGE * 8)
            data = pagemap.read((end - start) // PAGE * 8)
            for index in range((end - start) // PAGE):
                (entry,) = struct.unpack_from("<Q", data, index * 8)
                if entry >> 63 & 1:
                    present.append(start + index * PAGE - start + offset)  # file offset of the page
    return present


def sections(exe):
    out = subprocess.run(["readelf", "-SW", exe], capture_output=True, text=True, check=True).stdout
    rows = []
    for line in out.splitlines():
        match = re.match(r"\s*\[\s*\d+\]\s+(\S+)\s+\S+\s+([0-9a-f]+)\s+([0-9a-f]+)\s+([0-9a-f]+)", line)
        if match:
            name, address, offset, size = match.group(1), *(int(match.group(i), 16) for i in (2, 3, 4))
            if size and address:
                rows.append((offset, offset + size, address, name))
    rows.sort()
    return rows


C_FAMILIES = [
    (re.compile(r"^_ZN5swift|^_ZN\d+swift|^swift_|^_swift_"), "Swift runtime (C++)"),
    (re.compile(r"^\$s[sS]|^\$sSc|^\$ss"), "Swift stdlib"),
    (re.compile(r"^CCryptoBoringSSL|^BORINGSSL|^boringssl"), "BoringSSL (swift-crypto)"),
    (re.compile(r"^_?CF|^__CF|^_CF"), "CoreFoundation"),
    (re.compile(r"^u[a-z]*_|^U[A-Z]|^_ZN6icu_|^icu_|^_ZNK6icu_|^_ZN\d+icu_"), "ICU (_FoundationICU)"),
    (re.compile(r"^dispatch_|^_dispatch|^_os_|^_dispatch"), "libdispatch"),
    (re.compile(r"^sqlite3"), "SQLite (GRDB's C)"),
    (re.compile(r"^yaml_"), "libyaml (Yams)"),
    (re.compile(r"^c_nio|^CNIO"), "NIO C shims"),
]


def module_of(symbol):
    match = re.match(r"^\$s(\d+)([A-Za-z_][A-Za-z0-9_]*)", symbol)
    if match:
        length = int(match.group(1))
        return match.group(2)[:length]
    for pattern, label in C_FAMILIES:
        if pattern.search(symbol):
            return label
    if symbol.startswith(("_ZN", "_Z")):
        return "(other C++)"
    return "(other C)"


def main():
    parser = argparse.ArgumentParser(description="Resident pages of a process's executable, by section.")
    parser.add_argument("pid", type=int)
    parser.add_argument("--symbols", action="store_true", help="also by Swift module of the enclosing symbol")
    parser.add_argument("--top", type=int, default=20)
    args = parser.parse_args()
    exe, mappings = executable_mappings(args.pid)
    pages = resident_pages(args.pid, mappings)
    table = sections(exe)
    starts = [row[0] for row in table]
    by_section = collections.Counter()
    page_addresses = []
    for offset in pages:
        index = bisect.bisect_right(starts, offset) - 1
        if index >= 0 and offset < table[index][1]:
            by_section[table[index][3]] += PAGE
            page_addresses.append(table[index][2] + offset - table[index][0])
        else:
            by_section["(headers / between sections)"] += PAGE
    print(f"{exe}: {len(pages) * PAGE // 1024} kB of its pages resident")
    for name, size in by_section.most_common(args.top):
        print(f"{size // 1024:>8} kB  {name}")
    if args.symbols:
        nm = subprocess.run(["nm", "-n", "--defined-only", exe], capture_output=True, text=True, check=True).stdout
        symbols = []
        for line in nm.splitlines():
            fields = line.split()
            if len(fields) == 3:
                symbols.append((int(fields[0], 16), fields[2]))
        addresses = [s[0] for s in symbols]
        by_module = collections.Counter()
        for address in page_addresses:
            index = bisect.bisect_right(addresses, address) - 1
            by_module[module_of(symbols[index][1]) if index >= 0 else "(none)"] += PAGE
        print("\nby module of the symbol at each resident page's start:")
        for name, size in by_module.most_common(args.top):
            print(f"{size // 1024:>8} kB  {name}")


if __name__ == "__main__":
    main()
