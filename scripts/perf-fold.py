#!/usr/bin/env python3
"""Folds `perf script` output into folded stacks (`root;...;leaf count`), which
`embers convert` renders as a flame graph:

    perf record -e cpu-clock -g -o perf.data -- <command>
    perf script -i perf.data | scripts/perf-fold.py > ingest.folded
    embers convert ingest.folded ingest.svg

Frames are perf's symbol names without Rust hashes (`::h0123…`), offsets and generic
arguments.
`--keep NAME` keeps only stacks passing through a frame containing NAME, from the
first such frame down (the frames above it, thread start and the like, are dropped).
"""
import re
import sys
from collections import Counter

HASH = re.compile(r"::h[0-9a-f]{16}$")


def strip_generics(sym):
    """Drops generic arguments (`f<T, U>` -> `f`), keeping `<impl Trait for T>::f`."""
    out, depth = [], 0
    for i, ch in enumerate(sym):
        if depth:
            depth += {"<": 1, ">": -1}.get(ch, 0)
        elif ch == "<" and i > 0 and (sym[i - 1].isalnum() or sym[i - 1] in "_}"):
            depth = 1
        else:
            out.append(ch)
    return "".join(out)


def frames(lines):
    out = []
    for line in lines:
        parts = line.strip().split(None, 1)
        if len(parts) < 2:
            continue
        sym = parts[1].rsplit(" (", 1)[0]
        sym = sym.split("+0x")[0]
        sym = strip_generics(HASH.sub("", sym)).replace(";", ":")
        out.append(sym or "[unknown]")
    return list(reversed(out))


def kept(stack, keep):
    if keep is None:
        return stack
    for i, frame in enumerate(stack):
        if keep in frame:
            return stack[i:]
    return []


def main():
    keep = None
    if len(sys.argv) == 3 and sys.argv[1] == "--keep":
        keep = sys.argv[2]
    counts = Counter()
    block = []
    for line in sys.stdin:
        if line.strip():
            block.append(line)
            continue
        if block:
            stack = kept(frames(block[1:]), keep)
            if stack:
                counts[";".join(stack)] += 1
            block = []
    if block:
        stack = kept(frames(block[1:]), keep)
        if stack:
            counts[";".join(stack)] += 1
    for stack, n in sorted(counts.items()):
        print(f"{stack} {n}")


if __name__ == "__main__":
    main()
