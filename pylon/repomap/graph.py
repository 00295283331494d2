"""The file graph of a repo map: who imports whom, plus the references we can honestly see.

A node is a mapped file. An edge a -> b means a depends on b:
- an import of a resolves to b (weight 1; a Go package or Java wildcard spreads that 1 over
  the package's files), by the language's own rules (see `resolve_import`);
- a reference: an identifier in a's symbol signatures, summary or import lines names a
  distinctive symbol that b (a file of the same language) defines and a does not (weight
  REF_WEIGHT each). Nodes send us no file bodies, only symbols, imports and a summary, so
  this sees far fewer references than aider's whole-file tag scan; imports carry most of
  the graph.
"""

from __future__ import annotations

import functools
import posixpath
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from pylon.schemas.events import FileResult

REF_WEIGHT = 0.5
MAX_DEFINERS = 3  # a name defined in more files than this says nothing about which one is meant
_IDENT_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_WORD_PARTS_RE = re.compile(r"[A-Z]+[0-9]*(?=[A-Z][a-z])|[A-Z]?[a-z0-9]+|[A-Z]+[0-9]*")
_QUOTED_RE = re.compile(r"""["'`<]([^"'`<>]+)["'`>]""")
_COMMON_NAMES = frozenset(
    {
        "main", "init", "self", "this", "none", "true", "false", "null", "test", "tests", "setup",
        "config", "data", "name", "path", "value", "type", "list", "dict", "string", "error",
        "result", "close", "open", "read", "write", "start", "stop", "update", "create", "delete",
        "handle", "process", "default", "options", "params", "args", "kwargs", "index", "items",
        "keys", "values", "load", "save", "parse", "render", "build", "apply", "call", "reset",
    }
)  # fmt: skip
_JS_EXTS = (".ts", ".tsx", ".js", ".jsx", ".mjs", ".cjs", ".mts", ".cts", ".d.ts", ".vue", ".svelte")
_FAMILY_BY_EXT = {
    ".py": "python", ".pyi": "python", ".js": "js", ".jsx": "js", ".mjs": "js", ".cjs": "js",
    ".ts": "js", ".tsx": "js", ".mts": "js", ".cts": "js", ".vue": "js", ".svelte": "js",
    ".go": "go", ".rs": "rust", ".java": "java", ".kt": "java", ".scala": "java", ".c": "c",
    ".h": "c", ".cc": "c", ".cpp": "c", ".cxx": "c", ".hpp": "c", ".hh": "c", ".hxx": "c",
}  # fmt: skip


def family(path: str, language: str = "") -> str:
    """The import-resolution family of a file: python, js, go, rust, java, c, or ''."""
    lang = language.lower()
    if lang in {"python", "go", "rust", "java", "c"}:
        return lang
    if lang in {"javascript", "typescript", "tsx", "jsx"}:
        return "js"
    if lang in {"cpp", "c++", "objc", "cuda"}:
        return "c"
    if lang in {"kotlin", "scala"}:
        return "java"
    return _FAMILY_BY_EXT.get(PurePosixPath(path).suffix.lower(), "")


@dataclass
class FileGraph:
    nodes: list[str]
    edges: dict[str, dict[str, float]]  # src -> dst -> weight
    external: dict[str, list[str]] = field(default_factory=dict)  # src -> imports not in the repo

    def depends_on(self, path: str) -> list[str]:
        return sorted(self.edges.get(path, {}))

    def used_by(self) -> dict[str, list[str]]:
        rev: dict[str, set[str]] = defaultdict(set)
        for src, targets in self.edges.items():
            for dst in targets:
                rev[dst].add(src)
        return {dst: sorted(srcs) for dst, srcs in rev.items()}


class PathIndex:
    """Lookups over the repo's paths that every resolver needs."""

    def __init__(self, paths: Iterable[str]) -> None:
        self.paths = frozenset(paths)
        self.by_name: dict[str, list[str]] = defaultdict(list)
        self.by_dir: dict[str, list[str]] = defaultdict(list)
        for p in sorted(self.paths):
            parent, _, name = p.rpartition("/")
            self.by_name[name].append(p)
            self.by_dir[parent].append(p)
        self.dirs_by_name: dict[str, list[str]] = defaultdict(list)
        for d in sorted(self.by_dir):
            self.dirs_by_name[d.rpartition("/")[2]].append(d)
        self.py_roots = self._python_roots()
        self.rust_crates = self._rust_crates()

    def _python_roots(self) -> list[str]:
        # A source root is the parent of a top-level package: "" for a flat layout, "src" for src/.
        roots = {"", "src"}
        for p in self.paths:
            if p.endswith("/__init__.py") or p == "__init__.py":
                pkg = posixpath.dirname(p)
                parent = posixpath.dirname(pkg)
                if not self.exists(posixpath.join(parent, "__init__.py")) and pkg:
                    roots.add(parent)
        return sorted(roots, key=lambda r: (r.count("/") if r else -1, r))

    def _rust_crates(self) -> dict[str, str]:
        crates: dict[str, str] = {}
        for p in sorted(self.paths):
            parts = p.split("/")
            if len(parts) >= 3 and parts[-2] == "src" and parts[-1] in ("lib.rs", "main.rs"):
                crates.setdefault(parts[-3].replace("-", "_"), "/".join(parts[:-1]))
        return crates

    def exists(self, p: str) -> bool:
        return p in self.paths

    def first(self, candidates: Iterable[str]) -> str | None:
        for c in candidates:
            if c in self.paths:
                return c
        return None

    def with_suffix(self, suffix: str) -> list[str]:
        """Paths equal to suffix or ending in '/' + suffix."""
        name = suffix.rpartition("/")[2]
        return [p for p in self.by_name.get(name, ()) if p == suffix or p.endswith("/" + suffix)]


def _nearest(importer: str, candidates: list[str]) -> str | None:
    """Of several same-named files, the one sharing the longest directory prefix with the importer."""
    if not candidates:
        return None
    parts = importer.split("/")

    def shared(p: str) -> int:
        n = 0
        for a, b in zip(parts[:-1], p.split("/")[:-1], strict=False):
            if a != b:
                break
            n += 1
        return n

    return min(candidates, key=lambda p: (-shared(p), p.count("/"), p))


def _join(*parts: str) -> str:
    """Join repo-relative path parts, skipping empty ones (the repo root is "")."""
    return "/".join([p for p in parts if p])


# --- per-language resolution ----------------------------------------------------------------


def _py_module(idx: PathIndex, base: str, parts: list[str]) -> str | None:
    stem = _join(base, *parts)
    if not parts:
        return idx.first([_join(base, "__init__.py")])
    return idx.first([stem + ".py", stem + ".pyi", _join(stem, "__init__.py")])


def _resolve_python(spec: str, importer: str, idx: PathIndex) -> list[tuple[str, float]]:
    if spec.startswith("."):
        dots = len(spec) - len(spec.lstrip("."))
        base = posixpath.dirname(importer)
        for _ in range(dots - 1):
            base = posixpath.dirname(base)
        rest = spec[dots:]
        parts = rest.split(".") if rest else []
        for k in range(len(parts), -1, -1):
            hit = _py_module(idx, base, parts[:k])
            if hit and hit != importer:
                return [(hit, 1.0)]
        return []
    parts = [p for p in spec.split(".") if p]
    roots = list(idx.py_roots)
    here = posixpath.dirname(importer)
    if not idx.exists(_join(here, "__init__.py")) and here not in roots:
        roots.insert(0, here)  # a script's own directory is on sys.path
    # Longest module first; the last part may be a name imported from the module ("pkg.mod.Name"),
    # but no more than that: "pylon.tui.app" is not the package "pylon" when tui/ is remapped.
    for k in range(len(parts), max(len(parts) - 1, 1) - 1, -1):
        for root in roots:
            hit = _py_module(idx, root, parts[:k])
            if hit and hit != importer:
                return [(hit, 1.0)]
    # Installed-name remaps (package-dir = {"pkg.sub": "sub"}): match a tail of at least two parts.
    for k in range(len(parts), 1, -1):
        for i in range(0, k - 1):
            tail = "/".join(parts[i:k])
            found = idx.with_suffix(tail + ".py") or idx.with_suffix(tail + "/__init__.py")
            found = [f for f in found if f != importer]
            if found:
                return [(_nearest(importer, found) or found[0], 1.0)]
    return []


def _resolve_js(spec: str, importer: str, idx: PathIndex) -> list[tuple[str, float]]:
    if spec.startswith(("@/", "~/")):
        base = _join("src", spec[2:])
    elif spec.startswith("."):
        base = posixpath.normpath(_join(posixpath.dirname(importer), spec))
        if base.startswith("../") or base == "..":
            return []
    else:
        return []  # a package from node_modules
    stems = [base]
    stem, ext = posixpath.splitext(base)
    if ext in (".js", ".jsx", ".mjs", ".cjs"):
        stems.append(stem)  # TypeScript's "./x.js" names x.ts
    candidates: list[str] = []
    for s in stems:
        candidates += [s] + [s + e for e in _JS_EXTS] + [_join(s, "index" + e) for e in _JS_EXTS]
    hit = idx.first(c for c in candidates if c != importer)
    return [(hit, 1.0)] if hit else []


def _spread(files: list[str], importer: str) -> list[tuple[str, float]]:
    files = [f for f in files if f != importer]
    return [(f, 1.0 / len(files)) for f in files] if files else []


def _resolve_go(spec: str, importer: str, idx: PathIndex) -> list[tuple[str, float]]:
    parts = spec.split("/")
    if "." not in parts[0]:
        return []  # standard library ("net/http"); module paths start with a domain
    for i in range(1, len(parts)):  # the longest tail of the import path that is a repo dir
        files = idx.by_dir.get("/".join(parts[i:]), [])
        go = [f for f in files if f.endswith(".go") and not f.endswith("_test.go")]
        if go:
            return _spread(go, importer)
    return []


def _rust_module_dir(importer: str) -> str:
    p = PurePosixPath(importer)
    parent = "" if str(p.parent) == "." else str(p.parent)
    return parent if p.stem in ("mod", "lib", "main") else _join(parent, p.stem)


def _rust_module(idx: PathIndex, base: str, parts: list[str]) -> str | None:
    if not parts:
        return idx.first([_join(base, n) for n in ("mod.rs", "lib.rs", "main.rs")] + [base + ".rs"])
    stem = _join(base, *parts)
    return idx.first([stem + ".rs", _join(stem, "mod.rs")])


def _rust_crate_root(importer: str, idx: PathIndex) -> str:
    d = posixpath.dirname(importer)
    while True:
        if idx.exists(_join(d, "lib.rs")) or idx.exists(_join(d, "main.rs")):
            return d
        if not d:
            return "src" if idx.exists("src/lib.rs") or idx.exists("src/main.rs") else ""
        d = posixpath.dirname(d)


def _resolve_rust(spec: str, importer: str, idx: PathIndex) -> list[tuple[str, float]]:
    parts = [p for p in spec.split("::") if p]
    if not parts:
        return []
    head = parts[0]
    if head == "crate":
        base, parts = _rust_crate_root(importer, idx), parts[1:]
    elif head == "self":
        base, parts = _rust_module_dir(importer), parts[1:]
    elif head == "super":
        base = _rust_module_dir(importer)
        while parts and parts[0] == "super":
            base = posixpath.dirname(base)
            parts = parts[1:]
    elif head in idx.rust_crates:
        base, parts = idx.rust_crates[head], parts[1:]
    elif len(parts) == 1:
        base = _rust_module_dir(importer)  # `mod name;`
    else:
        return []  # std, core or a crates.io dependency
    for k in range(len(parts), -1, -1):
        hit = _rust_module(idx, base, parts[:k])
        if hit and hit != importer:
            return [(hit, 1.0)]
    return []


def _resolve_java(spec: str, importer: str, idx: PathIndex) -> list[tuple[str, float]]:
    parts = [p for p in spec.split(".") if p]
    ext = PurePosixPath(importer).suffix or ".java"
    if len(parts) >= 2 and parts[-1] == "*":
        pkg = "/".join(parts[:-1])
        dirs = [d for d in idx.dirs_by_name.get(parts[-2], ()) if d == pkg or d.endswith("/" + pkg)]
        files = [f for d in sorted(dirs) for f in idx.by_dir[d] if f.endswith(ext)]
        return _spread(files, importer)
    for k in range(len(parts), 1, -1):  # a static import names a member: drop it
        found = [f for f in idx.with_suffix("/".join(parts[:k]) + ext) if f != importer]
        if found:
            return [(_nearest(importer, found) or found[0], 1.0)]
    return []


def _resolve_c(spec: str, importer: str, idx: PathIndex) -> list[tuple[str, float]]:
    local = posixpath.normpath(_join(posixpath.dirname(importer), spec))
    if idx.exists(local) and local != importer:
        return [(local, 1.0)]
    found = [f for f in idx.with_suffix(posixpath.normpath(spec).lstrip("./")) if f != importer]
    hit = _nearest(importer, found)
    return [(hit, 1.0)] if hit else []


_RESOLVERS = {
    "python": _resolve_python,
    "js": _resolve_js,
    "go": _resolve_go,
    "rust": _resolve_rust,
    "java": _resolve_java,
    "c": _resolve_c,
}


def normalize_import(raw: str) -> list[str]:
    """Import specs from one entry of FileResult.imports, whatever form the executor used.

    Accepts a bare module ("pkg.mod", "./x", "crate::a::b", "stdio.h") or a whole statement
    ("from .x import A, B", "#include <x.h>", "use crate::a::{B, C};", "import x from './y'").
    """
    s = raw.strip().rstrip(";").strip()
    m = re.match(r"^from\s+(\S+)\s+import\s+(.+)$", s, re.DOTALL)
    if m:
        base, names = m.group(1), m.group(2).strip("() \n")
        sep = "" if base.endswith(".") else "."
        # Each imported name may be a submodule; a resolver falls back to `base` when it is not.
        out = []
        for name in names.split(","):
            name = name.strip().split(" as ")[0].strip()
            if name and name != "*" and _IDENT_RE.fullmatch(name):
                out.append(base + sep + name)
        return out or [base]
    quoted = _QUOTED_RE.search(s)
    if quoted:
        return [quoted.group(1).strip()]
    s = re.sub(r"^(#\s*include|(pub(\(\w+\))?\s+)?(use|mod)|import(\s+static)?|static|require)\s+", "", s)
    s = re.split(r"\s+as\s+", s)[0].strip()
    if "," in s and "{" not in s:
        return [p.strip() for p in s.split(",") if p.strip()]
    s = re.sub(r"::\{.*\}$", "", s, flags=re.DOTALL)
    s = re.sub(r"::\*$", "", s)
    return [s] if s else []


def resolve_import(raw: str, importer: str, language: str, idx: PathIndex) -> list[tuple[str, float]]:
    """Repo files (with edge weights) that one import of `importer` refers to; [] if none."""
    resolver = _RESOLVERS.get(family(importer, language))
    if resolver is None:
        return []
    best: dict[str, float] = {}
    for spec in normalize_import(raw):
        for dst, w in resolver(spec, importer, idx):
            best[dst] = max(w, best.get(dst, 0.0))
    return sorted(best.items())


@functools.lru_cache(maxsize=65536)
def _split(name: str) -> tuple[str, ...]:
    words: list[str] = []
    for chunk in re.split(r"[^A-Za-z0-9]+", name):
        words += _WORD_PARTS_RE.findall(chunk)
    return tuple(w.lower() for w in words if w)


def split_identifier(name: str) -> list[str]:
    """camelCase / PascalCase / snake_case / kebab-case parts, lower-cased."""
    return list(_split(name))


def _distinctive(name: str) -> bool:
    if len(name) < 4 or name.lower() in _COMMON_NAMES or name.startswith("__"):
        return False
    return len(name) >= 8 or "_" in name.strip("_") or any(c.isupper() for c in name[1:])


def build_graph(results: Mapping[str, FileResult], *, paths: Iterable[str] = ()) -> FileGraph:
    """The dependency graph over the files of `results` (keyed by repo path).

    `paths` adds files that exist in the snapshot but have no result (a failed job): imports
    may still point at them, and they appear as nodes.
    """
    nodes = sorted(set(results) | set(paths))
    idx = PathIndex(nodes)
    edges: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    external: dict[str, list[str]] = {}

    for path in sorted(results):
        res = results[path]
        missing: list[str] = []
        for raw in res.imports:
            hits = resolve_import(raw, path, res.language, idx)
            for dst, w in hits:
                edges[path][dst] += w
            if not hits:
                missing.append(raw)
        if missing:
            external[path] = missing

    definers: dict[str, set[str]] = defaultdict(set)
    for path, res in results.items():
        for sym in res.symbols:
            definers[sym.name].add(path)
    fams = {path: family(path, res.language) for path, res in results.items()}
    for path in sorted(results):
        res = results[path]
        own = {s.name for s in res.symbols}  # a summary mostly lists the file's own names
        text = " ".join([res.summary, *res.imports, *(s.signature for s in res.symbols)])
        for name in sorted(set(_IDENT_RE.findall(text)) - own):
            where = definers.get(name)
            if not where or len(where) > MAX_DEFINERS or not _distinctive(name):
                continue
            for dst in where:
                if fams[path] and fams[dst] == fams[path]:  # code names code of its own language
                    edges[path][dst] += REF_WEIGHT

    frozen = {src: dict(sorted(t.items())) for src, t in sorted(edges.items()) if t}
    return FileGraph(nodes=nodes, edges=frozen, external=external)
