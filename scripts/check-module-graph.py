#!/usr/bin/env python3
"""Checks the module graph of every crate in the workspace.

Two rules, both failing CI:

1. No import cycle between modules. Edges come from every path a module's code names:
   `use crate::a::b`, `crate::a::f()`, `super::x`, `self::x` and re-exports. Cycles are
   looked for level by level, as between siblings: a reference from `device::poll` to
   `engines::last_seen` is an edge `device -> engines` among the crate root's children.
   A module naming its own ancestors or descendants is not an edge (a parent declares its
   children; a child may use what its parent defines).
2. The rules in `scripts/module-rules.toml`: per crate, modules that must not name other
   modules (`forbid`, e.g. one front door importing another) or external crates
   (`forbid_crates`, e.g. an engine importing the HTTP framework).

Usage: scripts/check-module-graph.py [--root DIR] [--graph CRATE] [--self-test]
  --graph CRATE prints that crate's sibling edges (for docs and reviews) and exits.
  --self-test   checks the checker on small made-up crates (a cycle, a forbidden edge, clean).
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from collections import defaultdict
from pathlib import Path

IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
MOD_DECL = re.compile(r"^\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+(" + IDENT + r")\s*;", re.M)
PATH_ATTR = re.compile(r"#\[path\s*=")


def strip_comments_and_strings(src: str) -> str:
    """Blanks comments, string and char literals, keeping line numbers."""
    out = []
    i, n = 0, len(src)
    while i < n:
        c = src[i]
        if src.startswith("//", i):
            j = src.find("\n", i)
            j = n if j < 0 else j
            i = j
            continue
        if src.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if src.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif src.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            out.append("\n" * src.count("\n", i, j))
            i = j
            continue
        m = re.match(r'b?r(#*)"', src[i:i + 260]) if c in "rb" and (i == 0 or not (src[i - 1].isalnum() or src[i - 1] == "_")) else None
        if m:
            end = src.find('"' + m.group(1), i + m.end())
            end = n if end < 0 else end + 1 + len(m.group(1))
            out.append('""' + "\n" * src.count("\n", i, end))
            i = end
            continue
        if c == '"':
            j = i + 1
            while j < n and src[j] != '"':
                j += 2 if src[j] == "\\" else 1
            out.append('""' + "\n" * src.count("\n", i, j))
            i = j + 1
            continue
        if c == "'":
            m = re.match(r"'(\\.[^']*|[^'\\])'", src[i:i + 12])
            if m:
                out.append("' '")
                i += m.end()
                continue
        out.append(c)
        i += 1
    return "".join(out)


class Crate:
    def __init__(self, name: str, root_file: Path):
        self.name = name
        self.modules: dict[tuple[str, ...], Path] = {}
        # Each module's code with comments and literals blanked, read once.
        self.code: dict[tuple[str, ...], str] = {}
        self.walk((), root_file)

    def walk(self, path: tuple[str, ...], file: Path) -> None:
        self.modules[path] = file
        text = self.code[path] = strip_comments_and_strings(file.read_text())
        if PATH_ATTR.search(text):
            raise SystemExit(f"{file}: #[path] is not supported by this check; name module files after their modules")
        # Children of `foo.rs` / `foo/mod.rs` / `lib.rs` live in `foo/` / `foo/` / `src/`.
        if file.name in ("mod.rs", "lib.rs", "main.rs") or (path == () and file.parent.name == "bin"):
            base = file.parent if file.name in ("mod.rs", "lib.rs", "main.rs") else file.parent / file.stem
        else:
            base = file.parent / file.stem
        for name in MOD_DECL.findall(text):
            for cand in (base / f"{name}.rs", base / name / "mod.rs"):
                if cand.exists():
                    self.walk(path + (name,), cand)
                    break

    def resolve(self, segments: list[str]) -> tuple[str, ...]:
        """The deepest module the path lies in."""
        best: tuple[str, ...] = ()
        for k in range(1, len(segments) + 1):
            if tuple(segments[:k]) in self.modules:
                best = tuple(segments[:k])
            else:
                break
        return best


def expand_group(text: str, start: int) -> list[list[str]]:
    """Paths named by a `{a, b::c, d::{e, f}}` group starting at text[start] == '{'."""
    depth, j = 0, start
    while j < len(text):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                break
        j += 1
    inner = text[start + 1:j]
    parts, depth, cur = [], 0, ""
    for ch in inner:
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
            continue
        depth += ch == "{"
        depth -= ch == "}"
        cur += ch
    parts.append(cur)
    paths = []
    for p in parts:
        p = p.strip()
        if not p:
            continue
        m = re.match(r"((?:" + IDENT + r"\s*::\s*)*)(" + IDENT + r"|\{)", p)
        if not m:
            continue
        head = [s.strip() for s in m.group(1).split("::") if s.strip()]
        if m.group(2) == "{":
            sub = expand_group(p, p.index("{"))
            paths.extend(head + s for s in sub)
        else:
            paths.append(head + [m.group(2)])
    return paths


REF = re.compile(r"(?<![A-Za-z0-9_:])(crate|super|self)((?:\s*::\s*(?:" + IDENT + r"))*)(\s*::\s*\{)?")


def references(crate: Crate, mod: tuple[str, ...], text: str):
    """(line, target module, spelled path) for every in-crate path the module's code names."""
    for m in REF.finditer(text):
        kw = m.group(1)
        segs = [s.strip() for s in m.group(2).split("::") if s.strip()]
        if kw == "self" and not segs and not m.group(3):
            continue
        if kw == "crate":
            base: list[str] = []
        elif kw == "self":
            base = list(mod)
        else:
            base = list(mod)
            if not base:
                continue
            base.pop()
            while segs and segs[0] == "super":
                segs.pop(0)
                if base:
                    base.pop()
        tails = [segs]
        if m.group(3):
            tails = [segs + t for t in expand_group(text, m.end() - 1)]
        line = text.count("\n", 0, m.start()) + 1
        for t in tails:
            full = base + t
            yield line, crate.resolve(full), "::".join([kw] + t)


def external_uses(text: str, names: list[str]):
    for name in names:
        for m in re.finditer(r"(?<![A-Za-z0-9_:])" + re.escape(name) + r"\s*::", text):
            yield text.count("\n", 0, m.start()) + 1, name


def sibling_edge(src: tuple[str, ...], dst: tuple[str, ...]):
    k = 0
    while k < min(len(src), len(dst)) and src[k] == dst[k]:
        k += 1
    if k == len(src) or k == len(dst):
        return None  # ancestor or descendant
    return src[:k], src[k], dst[k]


def find_cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan)."""
    index, low, on, stack, out, counter = {}, {}, set(), [], [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(set(edges) | {w for ws in edges.values() for w in ws}):
        if v not in index:
            visit(v)
    return out


def roots(crate_dir: Path):
    src = crate_dir / "src"
    for f in (src / "lib.rs", src / "main.rs"):
        if f.exists():
            yield f.stem, f
    if (src / "bin").is_dir():
        for f in sorted((src / "bin").glob("*.rs")):
            yield f"bin/{f.stem}", f


def matches(mod: tuple[str, ...], prefix: str) -> bool:
    want = tuple(p for p in prefix.split("::") if p)
    return mod[: len(want)] == want


def check(root: Path, graph_for: str | None) -> int:
    rules_path = root / "scripts" / "module-rules.toml"
    rules = tomllib.loads(rules_path.read_text()) if rules_path.exists() else {}
    failures = 0
    crates = sorted(p for p in (root / "crates").iterdir() if (p / "Cargo.toml").exists())
    unknown = set(rules) - {c.name for c in crates}
    for name in sorted(unknown):
        print(f"{rules_path}: [{name}] names no crate under crates/")
        failures += 1
    for crate_dir in crates:
        crate_rules = rules.get(crate_dir.name, {})
        for root_name, root_file in roots(crate_dir):
            crate = Crate(crate_dir.name, root_file)
            # edges[parent][a][b] = first (file, line, path) naming b from a
            edges: dict[tuple[str, ...], dict[str, dict[str, tuple]]] = defaultdict(lambda: defaultdict(dict))
            for mod, file in crate.modules.items():
                text = crate.code[mod]
                rel = file.relative_to(root)
                for line, target, spelled in references(crate, mod, text):
                    e = sibling_edge(mod, target)
                    if e:
                        parent, a, b = e
                        edges[parent][a].setdefault(b, (rel, line, spelled))
                    for rule in crate_rules.get("forbid", []):
                        hit = [t for t in rule["to"] if matches(target, t) and not matches(mod, t)]
                        if matches(mod, rule["from"]) and hit:
                            print(f"{rel}:{line}: `{spelled}`: module {'::'.join(mod)} must not use {'::'.join(target)} ({rule['why']})")
                            failures += 1
                for rule in crate_rules.get("forbid_crates", []):
                    if matches(mod, rule["from"]):
                        for line, name in external_uses(text, rule["crates"]):
                            print(f"{rel}:{line}: module {'::'.join(mod) or 'crate root'} must not use the crate `{name}` ({rule['why']})")
                            failures += 1
            if graph_for == crate_dir.name:
                print(f"# {crate_dir.name} ({root_name}): sibling edges")
                for parent in sorted(edges):
                    for a in sorted(edges[parent]):
                        for b in sorted(edges[parent][a]):
                            print(f"{'::'.join(parent + (a,))} -> {'::'.join(parent + (b,))}")
                continue
            for parent, level in sorted(edges.items()):
                for cycle in find_cycles({a: set(bs) for a, bs in level.items()}):
                    where = "::".join(parent) or "crate root"
                    print(f"{crate_dir.name} ({root_name}): import cycle among the children of {where}: {' <-> '.join(cycle)}")
                    members = set(cycle)
                    for a in cycle:
                        for b, (rel, line, spelled) in sorted(level[a].items()):
                            if b in members:
                                print(f"    {a} -> {b}: {rel}:{line} `{spelled}`")
                    failures += 1
    if graph_for is None:
        if failures:
            print(f"module graph: {failures} problem(s); see docs/architecture.md for the rules")
        else:
            print("module graph: no cycles, every rule in scripts/module-rules.toml holds")
    return 1 if failures else 0


def self_test() -> int:
    """The checker must find what it is for; run by scripts/test.sh before the real check."""
    import contextlib
    import io
    import tempfile

    def run(files: dict[str, str], rules: str = "") -> tuple[int, str]:
        with tempfile.TemporaryDirectory() as d:
            root = Path(d)
            for rel, text in files.items():
                f = root / "crates" / "demo" / rel
                f.parent.mkdir(parents=True, exist_ok=True)
                f.write_text(text)
            (root / "crates" / "demo" / "Cargo.toml").write_text("[package]\nname = \"demo\"\n")
            (root / "scripts").mkdir()
            (root / "scripts" / "module-rules.toml").write_text(rules)
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                code = check(root, None)
            return code, out.getvalue()

    lib = "mod a;\nmod b;\npub mod front;\n"
    cyclic = {
        "src/lib.rs": lib + "mod c;\n",
        "src/a.rs": "use crate::b::{x, y::{z}};\n// crate::c::ignored in a comment\n",
        "src/b.rs": "pub fn x() { super::c::f(); }\npub mod y;\n",
        "src/b/y.rs": "pub fn z() { let _ = \"crate::a::in_a_string\"; }\n",
        "src/c.rs": "pub fn f() { crate::a::g(); }\n",
        "src/front.rs": "",
    }
    code, out = run(cyclic)
    assert code == 1 and "a <-> b <-> c" in out, out
    clean = dict(cyclic, **{"src/c.rs": "pub fn f() {}\n"})
    code, out = run(clean)
    assert code == 0, out
    rules = '[demo]\nforbid = [{ from = "front", to = ["a"], why = "front doors stay apart" }]\n'
    rules += 'forbid_crates = [{ from = "c", crates = ["axum"], why = "engines know no HTTP" }]\n'
    code, out = run(dict(clean, **{"src/front.rs": "use crate::a;\n", "src/c.rs": "use axum::Router;\n"}), rules)
    assert code == 1 and "front doors stay apart" in out and "engines know no HTTP" in out, out
    code, out = run(clean, rules)
    assert code == 0, out
    print("module graph self-test: cycles, forbidden modules and forbidden crates are found")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent)
    ap.add_argument("--graph", metavar="CRATE")
    ap.add_argument("--self-test", action="store_true")
    args = ap.parse_args()
    if args.self_test:
        return self_test()
    return check(args.root, args.graph)


if __name__ == "__main__":
    sys.exit(main())
