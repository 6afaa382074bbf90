#!/usr/bin/env python3
"""The house rules of docs/ARCHITECTURE.md, checked on src/:

1. no source file over 800 lines, test modules excepted (files named
   *tests.rs or under a tests/ folder, and everything after a
   `#[cfg(test)] mod tests {` line);
2. no function over 120 lines (test modules excepted);
3. no import cycle between the top-level modules (src/X), nor between
   sibling modules of one folder (a child may use its parent's items).

Rust is read as text: a `use`/path mention of `crate::X` (or `super::Y` /
`crate::P::Y` for siblings) counts as a dependency. Prints each violation and
exits 1 if there is any.
"""
import os
import re
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")
MAX_FILE, MAX_FN = 800, 120
FN = re.compile(r'^(\s*)(pub(\([a-z]+\))? )?(const )?(async )?(unsafe )?(extern "C" )?fn \w+')


def rust_files():
    for d, _, fs in os.walk(ROOT):
        for f in sorted(fs):
            if f.endswith(".rs"):
                yield os.path.join(d, f)


def production_lines(path):
    """The file's lines up to its inline test module (all of it if none)."""
    lines = open(path, encoding="utf-8").read().split("\n")
    parts = os.path.relpath(path, ROOT).split(os.sep)
    if parts[-1].endswith("tests.rs") or "tests" in parts[:-1]:
        return []
    for i, line in enumerate(lines):
        if line.strip() == "#[cfg(test)]" and i + 1 < len(lines) and re.match(r"\s*mod tests \{", lines[i + 1]):
            return lines[:i]
    return lines


def long_functions(path, lines):
    out = []
    for i, line in enumerate(lines):
        m = FN.match(line)
        if not m or line.rstrip().endswith(";"):
            continue
        indent = m.group(1)
        for j in range(i + 1, len(lines)):
            if lines[j] == indent + "}":
                if j - i + 1 > MAX_FN:
                    out.append(f"{rel(path)}:{i + 1}: function of {j - i + 1} lines (max {MAX_FN})")
                break
    return out


def rel(p):
    return os.path.relpath(p, os.path.join(ROOT, ".."))


def module_of(path):
    """Module path of a file, as a list: src/a/b.rs -> [a, b]; src/a/mod.rs -> [a]."""
    parts = os.path.relpath(path, ROOT)[:-3].split(os.sep)
    if parts[-1] in ("mod", "lib", "main"):
        parts = parts[:-1]
    return parts


def cycles(graph):
    """Every edge a -> b that lies on a cycle (b reaches a)."""
    def reaches(src, dst):
        seen, stack = set(), [src]
        while stack:
            n = stack.pop()
            if n == dst:
                return True
            if n in seen:
                continue
            seen.add(n)
            stack.extend(graph.get(n, ()))
        return False
    return sorted((a, b) for a in graph for b in graph[a] if a != b and reaches(b, a))


def main():
    problems = []
    top, siblings = {}, {}
    for path in rust_files():
        lines = production_lines(path)
        if len(lines) > MAX_FILE:
            problems.append(f"{rel(path)}: {len(lines)} lines outside tests (max {MAX_FILE})")
        problems += long_functions(path, lines)
        mod = module_of(path)
        # Code only: doc links and comments name modules without using them.
        text = "\n".join(re.sub(r"//.*", "", line) for line in lines)
        if mod:
            for dep in re.findall(r"\bcrate::(\w+)", text):
                if dep != mod[0]:
                    top.setdefault(mod[0], set()).add(dep)
        # Siblings: src/P/A(.rs|/..) using P's child B, by `super::B` from a
        # direct child file or `crate::P::B`.
        if len(mod) >= 2:
            parent, me = tuple(mod[:-1]), mod[-1]
            deps = set(re.findall(r"\bcrate::" + "::".join(parent) + r"::(\w+)", text)) if parent else set()
            if not os.path.basename(path) == "mod.rs":
                deps |= set(re.findall(r"\bsuper::(\w+)", text))
            for dep in deps:
                if dep != me and os.path.exists(os.path.join(ROOT, *parent, dep + ".rs")) or \
                        os.path.isdir(os.path.join(ROOT, *parent, dep)):
                    if dep != me:
                        siblings.setdefault(parent, {}).setdefault(me, set()).add(dep)
    for a, b in cycles(top):
        problems.append(f"import cycle between top-level modules: {a} -> {b} -> ... -> {a}")
    for parent, g in siblings.items():
        for a, b in cycles(g):
            problems.append(f"import cycle in {'::'.join(parent)}: {a} -> {b} -> ... -> {a}")
    for p in problems:
        print(p)
    print(f"house: {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
