#!/usr/bin/env python3
"""Heap allocations per routed message in steady state (issue 13, point 2).

Runs scripts/bench_callgrind.sh twice for a workload, with N and 2N
messages per sender, reads the call counts of the allocator entry points
from the two callgrind outputs, and prints the difference divided by the
extra messages: start-up, connections and warm-up cancel out, what is left
is what each further message costs.

    scripts/count_allocs.py BINARY send|broadcast [N]

BINARY as for bench_callgrind.sh (a `strip -g` copy of a release build).
"""
from __future__ import annotations

import collections
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ENTRY_POINTS = ["malloc", "calloc", "realloc", "posix_memalign", "aligned_alloc", "swift_allocObject", "swift_slowAlloc"]
SENDERS = 2  # as in bench_callgrind.sh


def calls_by_callee(path: Path) -> collections.Counter:
    """Total `calls=` per called function name in a callgrind output file
    (names are compressed: `cfn=(id) name` once, then `cfn=(id)`)."""
    names: dict[str, str] = {}
    calls: collections.Counter = collections.Counter()
    callee = None
    for line in path.open(errors="replace"):
        m = re.match(r"(c?fn)=\((\d+)\)(?: (.*))?", line)
        if m:
            kind, ident, name = m.groups()
            if name:
                names[ident] = name.strip()
            if kind == "cfn":
                callee = names.get(ident)
            continue
        m = re.match(r"calls=(\d+)", line)
        if m and callee:
            calls[callee] += int(m.group(1))
            callee = None
    return calls


def allocations(calls: collections.Counter) -> dict[str, int]:
    out = {}
    for entry in ENTRY_POINTS:
        out[entry] = sum(n for name, n in calls.items() if re.fullmatch(rf"{entry}('\d+)?( \[.*\])?", name))
    return out


def run(binary: str, mode: str, messages: int, out: Path) -> dict[str, int]:
    env = dict(os.environ, MESSAGES=str(messages))
    subprocess.run(["scripts/bench_callgrind.sh", binary, mode, str(out)], check=True, env=env,
                   cwd=Path(__file__).resolve().parents[1])
    return allocations(calls_by_callee(out))


def main() -> int:
    if len(sys.argv) < 3 or sys.argv[2] not in ("send", "broadcast"):
        print(__doc__, file=sys.stderr)
        return 2
    binary, mode = sys.argv[1], sys.argv[2]
    n = int(sys.argv[3]) if len(sys.argv) > 3 else (5000 if mode == "send" else 2500)
    with tempfile.TemporaryDirectory() as tmp:
        small = run(binary, mode, n, Path(tmp) / "small")
        large = run(binary, mode, 2 * n, Path(tmp) / "large")
    extra = SENDERS * n
    print(f"{mode}: allocator calls per message in steady state ({extra} extra messages)")
    for entry in ENTRY_POINTS:
        if small[entry] or large[entry]:
            print(f"  {entry:<18} {small[entry]:>9} -> {large[entry]:>9}  {(large[entry] - small[entry]) / extra:6.3f} per message")
    # The C allocator entry points are what reaches the heap; the Swift ones
    # call malloc (swift_slowAlloc) and are shown to say where they come from.
    heap = sum(large[e] - small[e] for e in ("malloc", "calloc", "realloc", "posix_memalign", "aligned_alloc"))
    print(f"  heap allocations per message: {heap / extra:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
