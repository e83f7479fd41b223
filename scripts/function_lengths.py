#!/usr/bin/env python3
"""Lists the longest function bodies in Weft's own C++ (clang-formatted, Google style).

A definition is a line at column 0 that is not a comment/preprocessor/namespace/class line and
whose brace opens a body that closes with a '}' at column 0. Lambdas and in-class member
functions are counted as part of their enclosing function. Tests, fuzzers and generated code
are skipped. A function may carry `// weft: table` on the line before it to say its length is
a table (one entry per line) and be exempt.

Usage: function_lengths.py [--max N] [--top K] [ROOT]
Exits 1 when --max is given and a function is longer than N lines.
"""
import argparse
import os
import re
import sys

SKIP_DIRS = {"build", ".git", "node_modules", "results"}
DEF_START = re.compile(r"^[A-Za-z_~][^;]*$")
NOT_DEF = re.compile(r"^(namespace|class|struct|union|enum|template\s*<[^>]*>\s*$|extern|typedef|using|#|//|/\*|\*)")


def is_test(path):
    base = os.path.basename(path)
    return (base.endswith("_test.cc") or "/fuzz/" in path or base.endswith("_fuzz.cc")
            or "/testdata/" in path)


def functions(path):
    with open(path, encoding="utf-8", errors="replace") as f:
        lines = f.read().split("\n")
    i = 0
    n = len(lines)
    while i < n:
        line = lines[i]
        if DEF_START.match(line) and not NOT_DEF.match(line) and "(" in line:
            # find the opening brace of the body: the first line ending in '{' before a ';'
            j = i
            while (j < n and not lines[j].rstrip().endswith("{") and ";" not in lines[j]
                   and not lines[j].rstrip().endswith("{}")):
                j += 1
            if j < n and lines[j].rstrip().endswith("{") and ";" not in lines[j]:
                k = j + 1
                while k < n and not lines[k].startswith("}"):
                    if lines[k] and not lines[k][0].isspace() and not lines[k].startswith("#"):
                        break  # another top-level line: not a function body we understand
                    k += 1
                if k < n and lines[k].startswith("}"):
                    name = re.sub(r"\s+", " ", " ".join(lines[i:j + 1]))[:100]
                    exempt = i > 0 and "weft: table" in lines[i - 1]
                    yield (k - j - 1, i + 1, name, exempt)
                    i = k + 1
                    continue
        i += 1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--max", type=int)
    ap.add_argument("--top", type=int, default=20)
    ap.add_argument("root", nargs="?", default=os.path.join(os.path.dirname(__file__), ".."))
    args = ap.parse_args()
    found = []
    for d, dirs, files in os.walk(args.root):
        dirs[:] = [x for x in dirs if x not in SKIP_DIRS and not x.startswith("build")]
        for fn in files:
            if not fn.endswith((".cc", ".h", ".c")):
                continue
            p = os.path.join(d, fn)
            rel = os.path.relpath(p, args.root)
            if is_test("/" + rel):
                continue
            for length, line, name, exempt in functions(p):
                found.append((length, f"{rel}:{line}", name, exempt))
    found.sort(reverse=True)
    for length, where, name, exempt in found[: args.top]:
        print(f"{length:5d}  {where}  {name}{'  (table)' if exempt else ''}")
    if args.max is not None:
        over = [f for f in found if f[0] > args.max and not f[3]]
        if over:
            print(f"{len(over)} function(s) longer than {args.max} lines", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
