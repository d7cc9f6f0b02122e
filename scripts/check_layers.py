#!/usr/bin/env python3
"""Fails when a header includes a layer it may not, or the umbrella header lists a layer before one it needs.

The allowed arrows are read from the layer table in docs/architecture.md (the one place they are stated): each
row is `| `folder/` | holds | depends on |`, the last column a comma-separated list of folders, `—` for none, or
"everything below" (every row under it). Usage: check_layers.py [REPO_ROOT]
"""
import pathlib
import re
import sys

root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else pathlib.Path(__file__).resolve().parent.parent)
doc = (root / "docs" / "architecture.md").read_text()
section = doc.split("## Layers", 1)[1].split("\n## ", 1)[0]
rows = re.findall(r"^\| `([a-z_]+)/` \|[^|]*\| ([^|]*) \|$", section, re.M)
if not rows:
    sys.exit("check_layers: no layer table found under '## Layers' in docs/architecture.md")
order = [name for name, _ in rows]  # top first
allowed = {}
for i, (name, deps) in enumerate(rows):
    deps = deps.strip()
    if deps == "everything below":
        allowed[name] = set(order[i + 1:])
    elif deps in ("—", "-", ""):
        allowed[name] = set()
    else:
        allowed[name] = {d.strip().strip("`").rstrip("/") for d in deps.split(",")}
        unknown = allowed[name] - set(order)
        if unknown:
            sys.exit(f"check_layers: docs/architecture.md: layer {name}/ depends on unknown {sorted(unknown)}")
        above = allowed[name] & set(order[: i + 1])
        if above:
            sys.exit(f"check_layers: docs/architecture.md: layer {name}/ depends on {sorted(above)}, which the table lists above it")

errors = []
inc = re.compile(r'^\s*#\s*include\s*[<"]cxrl/([a-z_]+)/', re.M)
folders = {p.name for p in (root / "include" / "cxrl").iterdir() if p.is_dir()}
for missing in sorted(folders - set(order)):
    errors.append(f"include/cxrl/{missing}/: a folder the layer table in docs/architecture.md does not list")
for layer in order:
    for h in sorted((root / "include" / "cxrl" / layer).glob("*.hpp")):
        for n, line in enumerate(h.read_text().splitlines(), 1):
            m = inc.match(line)
            if m and m.group(1) != layer and m.group(1) not in allowed[layer]:
                errors.append(f"{h.relative_to(root)}:{n}: {layer}/ includes {m.group(1)}/, which docs/architecture.md does not allow "
                              f"(allowed: {', '.join(sorted(allowed[layer])) or 'none'})")

# The umbrella header includes the layers bottom-up: each block after every layer it may use.
umbrella = (root / "include" / "cxrl" / "cxrl.hpp").read_text()
seen = []
for m in inc.finditer(umbrella):
    if not seen or seen[-1] != m.group(1):
        if m.group(1) in seen:
            errors.append(f"include/cxrl/cxrl.hpp: the {m.group(1)}/ headers are not one block")
        seen.append(m.group(1))
for i, layer in enumerate(seen):
    later = allowed.get(layer, set()) & set(seen[i + 1:])
    if later:
        errors.append(f"include/cxrl/cxrl.hpp: {layer}/ comes before {', '.join(sorted(later))}/, which it uses")
for layer in set(order) - set(seen):
    errors.append(f"include/cxrl/cxrl.hpp: includes no {layer}/ header")

for e in errors:
    print(e)
if errors:
    sys.exit(1)
print(f"check_layers: {len(order)} layers, every include points down ({' > '.join(order)})")
