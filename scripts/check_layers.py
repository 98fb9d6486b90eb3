#!/usr/bin/env python3
"""Checks that the folders of Sources/Singyeong form a dependency order
(README, "Source layout"): a file may use types declared in its own folder
and in folders on lower layers, never in a folder on its own layer or above.

    scripts/check_layers.py [--root Sources/Singyeong] [--report]

A "use" is the name of a top-level type (class, struct, enum, protocol,
typealias) declared in another folder, appearing as a word outside comments
and string literals; an `extension` of such a type counts too. Exit status 1
and one line per offending use (file:line, the type, its folder) when the
order is broken. `--report` prints every cross-folder use as a table instead.
Stdlib only; run by `make lint` and by Tests/integration/test_layers.py.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import defaultdict
from pathlib import Path

# Bottom to top. Folders on one line are one layer: they may not use each other.
# WebSocket sits above HTTP (the upgrade reads an HTTP request head and
# answers with an HTTP response); Config above Loop (it checks settings
# against the output queue's bounds).
LAYERS: list[list[str]] = [
    ["Loop"],
    ["Config", "Transport", "Metrics"],
    ["HTTP", "Codec"],
    ["WebSocket", "Redis"],
    ["Metadata"],
    ["Routing"],
    ["Gateway", "Cluster", "Proxy", "REST", "Queue"],
    ["Node"],
]
LAYER_OF = {folder: i for i, layer in enumerate(LAYERS) for folder in layer}

DECLARATION = re.compile(
    r"^(?:@\w+(?:\([^)]*\))?\s+)*(?:(?:public|internal|fileprivate|private|final|indirect|nonisolated)\s+)*"
    r"(?:class|struct|enum|protocol|typealias|actor)\s+([A-Z]\w*)",
    re.MULTILINE)
WORD = re.compile(r"\b[A-Z]\w*\b")


def strip_comments_and_strings(text: str) -> str:
    """Blanks out comments and string literals, keeping line breaks (so line
    numbers stay right). Handles //, nested /* */, "...", \"\"\"...\"\"\" and
    #"..."# well enough for this codebase; interpolations inside strings are
    blanked too (a type named only inside "\\(...)" is not seen)."""
    out = []
    i, n = 0, len(text)
    while i < n:
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif text.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif text[i] == '"' or (text[i] == "#" and text.startswith('#"', i)):
            hashes = 0
            while i + hashes < n and text[i + hashes] == "#":
                hashes += 1
            start = i
            i += hashes
            quote = '"""' if text.startswith('"""', i) else '"'
            i += len(quote)
            terminator = quote + "#" * hashes
            while i < n and not text.startswith(terminator, i):
                if text[i] == "\\" and hashes == 0:
                    i += 1
                if quote == '"' and text[i] == "\n":
                    break
                i += 1
            i = min(n, i + len(terminator))
            out.append(re.sub(r"[^\n]", " ", text[start:i]))
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def scan(root: Path):
    """(declared: type name → folder, files: [(path, folder, stripped text)])."""
    declared: dict[str, str] = {}
    files = []
    for path in sorted(root.rglob("*.swift")):
        folder = path.relative_to(root).parts[0]
        text = strip_comments_and_strings(path.read_text(encoding="utf-8"))
        files.append((path, folder, text))
        for name in DECLARATION.findall(text):
            declared.setdefault(name, folder)
    return declared, files


def shown(path: Path) -> str:
    """The path relative to the working directory when it lies below it."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", default=str(Path(__file__).resolve().parent.parent / "Sources" / "Singyeong"))
    ap.add_argument("--report", action="store_true", help="print every cross-folder use, allowed or not")
    args = ap.parse_args()
    root = Path(args.root)
    declared, files = scan(root)
    problems = []
    uses: dict[tuple[str, str], set[str]] = defaultdict(set)
    for path, folder, text in files:
        if folder not in LAYER_OF:
            problems.append(f"{shown(path)}: folder {folder!r} has no layer in scripts/check_layers.py")
            continue
        for line_number, line in enumerate(text.splitlines(), 1):
            for name in set(WORD.findall(line)):
                owner = declared.get(name)
                if owner is None or owner == folder:
                    continue
                uses[(folder, owner)].add(name)
                if owner in LAYER_OF and LAYER_OF[owner] >= LAYER_OF[folder]:
                    relation = "on the same layer as" if LAYER_OF[owner] == LAYER_OF[folder] else "above"
                    problems.append(f"{shown(path)}:{line_number}: uses {name} from {owner}/, which is {relation} {folder}/")
    if args.report:
        for (user, owner), names in sorted(uses.items()):
            ok = owner in LAYER_OF and user in LAYER_OF and LAYER_OF[owner] < LAYER_OF[user]
            print(f"{user:>10} -> {owner:<10} {'ok ' if ok else 'BAD'} {', '.join(sorted(names))}")
        return 0
    for p in problems:
        print(p)
    if problems:
        print(f"{len(problems)} use(s) break the layer order (README, \"Source layout\")", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
