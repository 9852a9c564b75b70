#!/usr/bin/env python3
"""Fills the tables of docs/RESULTS.md from docs/results/*/table.md and
review.md (written by scripts/results.sh): every line `<!-- table NAME -->`
is followed by NAME's accuracy table, `<!-- calibration NAME -->` by its
calibration table, `<!-- stopping NAME -->` by its stopping table,
`<!-- classes NAME -->` by its per-label table (the last point),
`<!-- review NAME -->` by its review table, replacing
what followed before (up to the next blank line).

Usage: scripts/results_md.py docs/RESULTS.md
"""
import re
import sys
from pathlib import Path

root = Path(__file__).resolve().parent.parent / "docs" / "results"


def tables(name):
    text = (root / name / "table.md").read_text()
    parts = [p.strip() for p in text.strip().split("\n\n")]
    return {
        "table": parts[0],
        "calibration": parts[1] if len(parts) > 1 else "",
        "stopping": parts[2] if len(parts) > 2 else "",
        "classes": "\n\n".join(parts[3:]),
    }


def block(kind, name):
    if kind == "review":
        text = (root / name / "review.md").read_text().strip()
    else:
        text = tables(name)[kind]
    commit = (root / name / "COMMIT").read_text().strip()
    return f"{text}\n\n<sub>commit `{commit}`, `scripts/results.sh` (docs/results/{name}/)</sub>"


def main(path):
    lines = Path(path).read_text().split("\n")
    out = []
    i = 0
    while i < len(lines):
        line = lines[i]
        m = re.match(r"<!-- (table|calibration|stopping|classes|review) (\S+) -->", line)
        out.append(line)
        i += 1
        if not m:
            continue
        # The old table, a blank line and its commit line.
        while i < len(lines) and lines[i].strip() != "":
            i += 1
        if i + 1 < len(lines) and lines[i + 1].startswith("<sub>commit"):
            i += 2
        try:
            out.append(block(m.group(1), m.group(2)))
        except FileNotFoundError:
            out.append(f"(not measured: docs/results/{m.group(2)} is missing)")
    Path(path).write_text("\n".join(out))


if __name__ == "__main__":
    main(sys.argv[1])
