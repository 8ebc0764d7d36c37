#!/usr/bin/env bash
# Prints bulkwatch's module graph from `swift package describe` (not drawn by hand): each
# library target of this package and the package targets it depends on, lowest layer first.
# docs/ARCHITECTURE.md embeds its output; re-run after changing Package.swift.
set -euo pipefail
cd "$(dirname "$0")/.."
swift package describe --type json 2>/dev/null | python3 -c '
import json, sys
package = json.load(sys.stdin)
targets = {t["name"]: t for t in package["targets"]}
own = {name for name, t in targets.items() if t["type"] in ("library", "executable", "system-target")}
deps = {name: [d for d in targets[name].get("target_dependencies", []) if d in own] for name in own}
order, seen = [], set()
def visit(name):
    if name in seen: return
    seen.add(name)
    for d in sorted(deps[name]): visit(d)
    order.append(name)
for name in sorted(own, key=lambda n: (targets[n]["type"] == "executable", n)): visit(name)
width = max(len(n) for n in order)
for name in order:
    kind = targets[name]["type"]
    arrow = ", ".join(deps[name]) if deps[name] else "(nothing of ours)"
    print(f"{name:<{width}}  {kind:<13} -> {arrow}")
'
