"""The deterministic executor: symbols, imports and a summary of one file, from tree-sitter alone.

Pure, synchronous and offline: the same text always gives the same FileResult. Grammars,
parsers and compiled queries are made once per process (parsers once per thread) because a
provider node calls this hundreds of times a second; a small file costs well under a millisecond.

A file whose language no grammar here reads still gets a result (language "text", no symbols,
a summary from its first lines): a repo map wants every file listed, not a failed job. Only
input that is not text at all (NUL bytes, unencodable characters) is an error.
"""

from __future__ import annotations

import functools
import hashlib
import re
import time
from dataclasses import dataclass

import tree_sitter

from pylon.executors import docs
from pylon.executors.languages import (
    SUPPORTED_LANGUAGES,
    TEXT_LANGUAGE,
    detect_language,
    get_language,
    get_parser,
    normalize_language,
)
from pylon.executors.queries import QUERIES
from pylon.executors.summary import SummaryEntry, build_summary, build_text_summary
from pylon.executors.version import deterministic_version
from pylon.schemas.errors import ErrorCode
from pylon.schemas.events import FileResult, Symbol

EXECUTOR_NAME = "deterministic"
DEFAULT_TIMEOUT_S = 5.0
# Beyond this a file is generated or vendored; parsing it would only burn the node's time.
MAX_BYTES = 8 * 1024 * 1024

# Kinds whose functions are methods and whose variables are fields.
_TYPE_KINDS = frozenset({"class", "struct", "interface", "enum", "trait", "impl", "union"})
_FUNCTION_KINDS = frozenset({"function", "method"})
_FUNCTION_VALUES = frozenset(
    {"lambda", "function_expression", "arrow_function", "generator_function", "function"}
)
_SIGNATURE_MAX = 160
_QUERY_WINDOW = 256 * 1024
_MAX_DEF_DEPTH = 160  # tree depth beyond which definitions are not looked for
_CLOCK_EVERY = 2048  # loop iterations between two looks at the clock
_SIGNATURE_SCAN = 600  # bytes of a definition's head read to build its signature
_LINE_COMMENT = re.compile(r"//[^\n]*\n")
_PY_LINE_COMMENT = re.compile(r"#[^\n]*\n")
_BLOCK_COMMENT = re.compile(r"/\*.*?\*/", re.DOTALL)
_FIRST_LINE_KINDS = frozenset({"variable", "const", "field", "enum_member", "type", "macro", "package"})


class ExecError(Exception):
    """A job this executor cannot do; `code` is what the node reports in its error feedback."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass(slots=True)
class _Def:
    kind: str
    name: str
    node: tree_sitter.Node  # the whole definition: nesting and signature come from it
    line: int  # 1-based, of the name
    start: int
    end: int
    order: int  # pattern index: the earlier pattern wins a duplicate
    local: bool  # dropped when the nearest enclosing definition is a function
    parent: str = ""
    value: tree_sitter.Node | None = None
    hidden: bool = False  # an anonymous function: a scope for locals, not a symbol
    hoist: bool = False  # belongs to the definition around its enclosing one
    inner: _Def | None = None  # nearest enclosing definition, hidden scopes included
    outer: _Def | None = None  # nearest enclosing named definition


# --------------------------------------------------------------------------- caches


@functools.cache
def _query(language: str) -> tree_sitter.Query:
    return tree_sitter.Query(get_language(language), QUERIES[language])


@dataclass(frozen=True, slots=True)
class _Pattern:
    """What a query pattern's captures mean; the same for every match of that pattern."""

    role: str  # "def", "scope" or "import"
    capture: str = ""  # the @def.KIND / @local.KIND capture
    kind: str = ""
    local: bool = False
    checks: tuple[tuple[str, bytes], ...] = ()  # @is.WORD captures and the WORD each must be


_PATTERNS: dict[tuple[str, int], _Pattern] = {}


def _pattern(language: str, index: int, caps: dict[str, list[tree_sitter.Node]]) -> _Pattern:
    key = (language, index)
    meta = _PATTERNS.get(key)
    if meta is not None:
        return meta
    checks = tuple((cap, cap[3:].encode()) for cap in caps if cap.startswith("is."))
    if "import" in caps:
        meta = _Pattern("import", checks=checks)
    elif "scope" in caps:
        meta = _Pattern("scope", checks=checks)
    else:
        meta = _Pattern("def", checks=checks)
        for cap in caps:
            if cap.startswith(("def.", "local.")):
                local = cap.startswith("local.")
                meta = _Pattern("def", cap, cap.split(".", 1)[1], local, checks)
                break
    _PATTERNS[key] = meta
    return meta


# --------------------------------------------------------------------------- helpers


def _text(src: bytes, node: tree_sitter.Node) -> str:
    # Slicing the source: Node.text re-reads through the parse callback, ~40x slower.
    return src[node.start_byte : node.end_byte].decode("utf-8", "replace")


def _strip_quotes(text: str) -> str:
    if len(text) >= 2 and text[0] in "\"'`<" and text[-1] in "\"'`>":
        return text[1:-1]
    return text


_C_WRAPPERS = frozenset(
    {
        "pointer_declarator",
        "array_declarator",
        "init_declarator",
        "function_declarator",
        "parenthesized_declarator",
        "attributed_declarator",
        "reference_declarator",
    }
)
_C_NAMES = frozenset({"identifier", "field_identifier", "type_identifier", "primitive_type"})


def _c_declarator_name(node: tree_sitter.Node) -> tuple[tree_sitter.Node | None, str]:
    """The identifier a C declarator declares, and the wrapper directly around it."""
    wrapper = ""
    for _ in range(64):  # declarators nest a few levels; the bound keeps hostile input cheap
        if node.type in _C_NAMES:
            return node, wrapper
        if node.type not in _C_WRAPPERS:
            return None, wrapper
        inner = node.child_by_field_name("declarator")
        if inner is None:
            inner = node.named_child(0) if node.named_child_count else None
            if inner is None:
                return None, wrapper
        wrapper = node.type
        node = inner
    return None, wrapper


def _type_name(src: bytes, node: tree_sitter.Node) -> str:
    """`Foo` from a type like `*pkg.Foo[T]`, `&'a mut Foo<T>` or `Foo<T>`."""
    text = _text(src, node)
    for sep in ("<", "["):
        cut = text.find(sep)
        if cut > 0:
            text = text[:cut]
    text = text.replace("&", " ").replace("*", " ").replace("mut ", " ").replace("dyn ", " ")
    words = [w for w in text.split() if not w.startswith("'")]
    if not words:
        return ""
    last = words[-1]
    for sep in ("::", "."):
        if sep in last:
            last = last.rsplit(sep, 1)[1]
    return last.strip("()[];,")  # `[T; N]` names itself by its last word, as ctags does


_TIGHTEN = (("( ", "("), (" )", ")"), (",)", ")"), ("[ ", "["), (" ]", "]"), (",]", "]"), (" ,", ","))


def _one_line(text: str, limit: int = _SIGNATURE_MAX) -> str:
    text = " ".join(text.split())
    for old, new in _TIGHTEN:  # what joining a multi-line parameter list leaves behind
        if old in text:
            text = text.replace(old, new)
    if len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    return text


def _body_start(d: _Def) -> int | None:
    """Where a definition's body begins: its signature is everything before."""
    node = d.node
    body = node.child_by_field_name("body")
    if body is None and d.value is not None:
        body = d.value.child_by_field_name("body")
    if body is None and node.type == "type_spec":
        typ = node.child_by_field_name("type")
        if typ is not None and typ.type in ("struct_type", "interface_type"):
            # `type S struct {`: keep the keyword, drop the fields
            return typ.start_byte + (6 if typ.type == "struct_type" else 9)
    return body.start_byte if body is not None else None


def _c_typedef_signature(node: tree_sitter.Node, src: bytes) -> str:
    """`typedef struct Node Node, *NodeP` without the struct's fields."""
    typ = node.child_by_field_name("type")
    if typ is None:
        return ""
    body = typ.child_by_field_name("body")
    head = src[typ.start_byte : body.start_byte if body is not None else typ.end_byte]
    decls = ", ".join(_text(src, d) for d in node.children_by_field_name("declarator"))
    return _one_line(f"typedef {head.decode('utf-8', 'replace')} {decls}")


def _signature(d: _Def, source: bytes, language: str) -> str:
    if d.node.type == "type_definition":
        return _c_typedef_signature(d.node, source)
    if d.node.type == "macro_definition":
        return f"macro_rules! {d.name}"
    start = d.node.start_byte
    body = _body_start(d)
    end = body if body is not None and body > start else d.node.end_byte
    chunk = source[start : min(end, start + _SIGNATURE_SCAN)].decode("utf-8", "replace")
    if d.kind in _FIRST_LINE_KINDS or body is None:
        chunk = chunk.split("\n", 1)[0]
    elif "\n" in chunk:
        # A signature spread over lines may carry comments; they would run into the code.
        chunk = (_PY_LINE_COMMENT if language == "python" else _LINE_COMMENT).sub("\n", chunk)
    if "/*" in chunk:
        chunk = _BLOCK_COMMENT.sub(" ", chunk)
    chunk = chunk.rstrip().rstrip("{:=;").rstrip()
    return _one_line(chunk)


# --------------------------------------------------------------------------- imports


def _python_imports(src: bytes, node: tree_sitter.Node, out: list[str]) -> None:
    if node.type == "import_statement":
        for child in node.children_by_field_name("name"):
            target = child.child_by_field_name("name") if child.type == "aliased_import" else child
            if target is not None:
                out.append(_text(src, target))
        return
    if node.type == "future_import_statement":
        out.append("__future__")
        return
    module = node.child_by_field_name("module_name")
    if module is None:
        return
    mod = _text(src, module)
    if mod.strip(".") == "":
        # `from . import a, b`: the imported names are the modules
        for child in node.children_by_field_name("name"):
            target = child.child_by_field_name("name") if child.type == "aliased_import" else child
            if target is not None:
                out.append(mod + _text(src, target))
        return
    out.append(mod)


def _imports_of(language: str, src: bytes, node: tree_sitter.Node, out: list[str]) -> None:
    if language == "python":
        _python_imports(src, node, out)
    elif language == "rust":
        out.append(_one_line(_text(src, node), 200))
    elif language == "java":
        text = _text(src, node).strip()
        text = text.removeprefix("import").strip().removesuffix(";").strip()
        out.append(" ".join(text.split()))
    else:  # a string literal holding a module path or header name
        text = _strip_quotes(_text(src, node).strip())
        if text:
            out.append(text)


# --------------------------------------------------------------------------- extraction


def _collect(
    language: str, src: bytes, root: tree_sitter.Node, deadline: float
) -> tuple[list[_Def], list[str]]:
    cursor = tree_sitter.QueryCursor(_query(language))
    # Without a bound, matching is quadratic in nesting depth: 8000 nested braces took 2.5 s.
    # Real definitions sit at most ~50 nodes deep (measured on the test corpus).
    cursor.set_max_start_depth(_MAX_DEF_DEPTH)
    size = root.end_byte
    if size <= _QUERY_WINDOW:
        matches = cursor.matches(root)
    else:
        # QueryCursor's progress_callback crashes py-tree-sitter 0.26, so a big file is queried
        # window by window with the clock checked between them. A definition spanning windows
        # comes back once per window; _nest drops the repeats.
        matches = []
        for start in range(0, size, _QUERY_WINDOW):
            if time.monotonic() > deadline:
                raise ExecError(ErrorCode.TIMEOUT, "symbol query exceeded the time limit")
            cursor.set_byte_range(start, min(start + _QUERY_WINDOW, size))
            matches.extend(cursor.matches(root))
    if time.monotonic() > deadline:
        raise ExecError(ErrorCode.TIMEOUT, "symbol query exceeded the time limit")

    defs: list[_Def] = []
    imports: list[str] = []
    for count, (index, caps) in enumerate(matches):
        if count % _CLOCK_EVERY == 0 and count and time.monotonic() > deadline:
            raise ExecError(ErrorCode.TIMEOUT, "symbol extraction exceeded the time limit")
        meta = _pattern(language, index, caps)
        if meta.checks and not all(
            src[caps[cap][0].start_byte : caps[cap][0].end_byte] == word for cap, word in meta.checks
        ):
            continue
        if meta.role == "import":
            for node in caps["import"]:
                _imports_of(language, src, node, imports)
            continue
        if meta.role == "scope":
            node = caps["scope"][0]
            defs.append(
                _Def(
                    "function",
                    "",
                    node,
                    node.start_point[0] + 1,
                    node.start_byte,
                    node.end_byte,
                    index,
                    local=False,
                    hidden=True,
                )
            )
            continue
        if not meta.capture:
            continue
        cap, kind, local = meta.capture, meta.kind, meta.local
        dnode = caps[cap][0]
        value = caps["value"][0] if "value" in caps else None
        parent = ""
        if "recv" in caps:
            parent = _type_name(src, caps["recv"][0])
        names: list[tree_sitter.Node] = list(caps.get("name", ()))
        if kind == "impl":
            names = caps.get("recv", [])[:1]
            parent = ""
        elif "decl" in caps:
            kind, local, names = _c_decl(src, kind, local, dnode, caps["decl"])
            if not kind:
                continue
        elif "embed" in caps:
            names = caps["embed"][:1]
        elif language == "go" and dnode.type in ("const_spec", "var_spec"):
            names = [n for n in dnode.children_by_field_name("name") if n.type == "identifier"]
        if value is not None and value.type in _FUNCTION_VALUES and kind in ("variable", "const"):
            kind = "function"
        for name_node in names:
            if kind == "impl" or "embed" in caps:
                name = _type_name(src, name_node)
            else:
                name = _text(src, name_node)
                if kind == "module":
                    name = _strip_quotes(name)  # TS `declare module "x"`
            if not name:
                continue
            defs.append(
                _Def(
                    kind=kind,
                    name=name,
                    node=dnode,
                    line=name_node.start_point[0] + 1,
                    start=dnode.start_byte,
                    end=dnode.end_byte,
                    order=index,
                    local=local,
                    parent=parent,
                    value=value,
                    hoist="hoist" in caps,
                )
            )
    return defs, imports


def _c_decl(
    src: bytes, kind: str, local: bool, dnode: tree_sitter.Node, decls: list[tree_sitter.Node]
) -> tuple[str, bool, list[tree_sitter.Node]]:
    """Resolve C declarators: prototypes and `extern` declarations declare nothing here."""
    names: list[tree_sitter.Node] = []
    if kind == "variable":
        if dnode.has_error:
            # `static EXPORT_MACRO int f(...)`: without the macro's definition tree-sitter
            # recovers with a bogus declaration of the macro name; it defines nothing.
            return "", local, []
        for child in dnode.children:
            if child.type == "storage_class_specifier" and _text(src, child) == "extern":
                return "", local, []
    for decl in decls:
        ident, wrapper = _c_declarator_name(decl)
        if ident is None or ident.type == "primitive_type":
            continue
        if kind == "variable" and wrapper == "function_declarator":
            continue  # a prototype, defined elsewhere
        names.append(ident)
    return kind, local, names


def _nest(defs: list[_Def]) -> list[_Def]:
    """Definitions in source order with `inner` and `outer` set, locals and hidden scopes dropped."""
    defs.sort(key=lambda d: (d.start, -d.end, d.order))
    seen: set[tuple[int, int, str, int]] = set()
    stack: list[_Def] = []
    out: list[_Def] = []
    for d in defs:
        key = (d.start, d.end, d.name, d.line)
        if key in seen:
            continue
        seen.add(key)
        while stack and (stack[-1].end < d.end or stack[-1].end <= d.start):
            stack.pop()
        inner: _Def | None = None
        outer: _Def | None = None
        for candidate in reversed(stack):
            if candidate.start == d.start and candidate.end == d.end:
                continue  # same node (`a, b = ...`): a sibling, not a container
            if inner is None:
                inner = candidate
            if not candidate.hidden:
                outer = candidate
                break
        if d.local and inner is not None and inner.kind in _FUNCTION_KINDS:
            continue
        if outer is not None and (d.hoist or (d.kind in _TYPE_KINDS and outer.kind == "type")):
            # A TS constructor's `private x` belongs to the class; the struct in a C
            # `typedef struct s {...} s_t;` belongs to the file, not to the typedef.
            outer = outer.outer
        d.inner, d.outer = inner, outer
        stack.append(d)
        if not d.hidden:
            out.append(d)
    return out


def _finish(defs: list[_Def], source: bytes, language: str, deadline: float) -> list[tuple[Symbol, _Def]]:
    out: list[tuple[Symbol, _Def]] = []
    seen: set[tuple[str, int]] = set()
    for count, d in enumerate(defs):
        if count % _CLOCK_EVERY == 0 and count and time.monotonic() > deadline:
            raise ExecError(ErrorCode.TIMEOUT, "symbol extraction exceeded the time limit")
        key = (d.name, d.line)
        if key in seen:  # `exports.send = function send()`: one symbol, not two
            continue
        seen.add(key)
        kind = d.kind
        if d.inner is not None and d.inner.kind in _TYPE_KINDS:
            if kind == "function":
                kind = "method"
            elif kind == "variable":
                kind = "field"
        d.kind = kind
        parent = d.parent or (d.outer.name if d.outer is not None else "")
        out.append((Symbol(d.name, kind, d.line, _signature(d, source, language), parent), d))
    out.sort(key=lambda p: (p[0].line, p[1].start))
    return out


def _parse(language: str, source: bytes, deadline: float) -> tree_sitter.Tree:
    parser = get_parser(language)
    size = len(source)

    # tree-sitter only reports progress when it reads through a callback, not from a bytestring.
    def read(offset: int, _point: object) -> bytes:
        return source[offset : offset + 65536] if offset < size else b""

    def progress(*_state: object) -> bool:
        return time.monotonic() > deadline

    try:
        tree = parser.parse(read, progress_callback=progress)
    except ValueError as exc:  # raised when the progress callback halts the parse
        parser.reset()
        if time.monotonic() > deadline:
            raise ExecError(ErrorCode.TIMEOUT, "parsing exceeded the time limit") from exc
        raise ExecError(ErrorCode.EXEC_ERROR, f"parser failed: {exc}") from exc
    if tree is None:
        raise ExecError(ErrorCode.EXEC_ERROR, "parser returned no tree")
    return tree


def count_lines(text: str) -> int:
    if not text:
        return 0
    return text.count("\n") + (0 if text.endswith("\n") else 1)


def _check_input(text: str) -> bytes:
    if not isinstance(text, str):
        raise ExecError(ErrorCode.BAD_INPUT, "input must be text")
    if "\x00" in text:
        raise ExecError(ErrorCode.BAD_INPUT, "input contains NUL bytes: binary content, not source text")
    try:
        source = text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ExecError(ErrorCode.BAD_INPUT, f"input is not encodable as UTF-8: {exc.reason}") from exc
    if len(source) > MAX_BYTES:
        raise ExecError(ErrorCode.TOO_LARGE, f"input is {len(source)} bytes; the limit is {MAX_BYTES}")
    return source


def resolve_language(path: str, text: str, language: str | None) -> str:
    """The grammar a file gets: the requested language when supported, else by its path/shebang."""
    lang = normalize_language(language)
    if lang is None:
        lang = detect_language(path, text)
    return lang if lang in SUPPORTED_LANGUAGES else TEXT_LANGUAGE


def extract_file(
    path: str, text: str, language: str | None = None, *, timeout_s: float = DEFAULT_TIMEOUT_S
) -> FileResult:
    """Symbols, imports and a summary of one file. Raises ExecError (bad_input, too_large, timeout)."""
    deadline = time.monotonic() + timeout_s
    source = _check_input(text)
    sha = hashlib.sha256(source).hexdigest()
    lines = count_lines(text)
    lang = resolve_language(path, text, language)
    if lang == TEXT_LANGUAGE:
        return FileResult(
            path=path,
            language=TEXT_LANGUAGE,
            lines=lines,
            symbols=[],
            imports=[],
            summary=build_text_summary(path, text, lines),
            executor=EXECUTOR_NAME,
            input_sha256=sha,
            bytes_in=len(source),
            executor_version=deterministic_version(),
        )

    tree = _parse(lang, source, deadline)
    defs, raw_imports = _collect(lang, source, tree.root_node, deadline)
    pairs = _finish(_nest(defs), source, lang, deadline)
    # >=, not >: a limit of 0 then fails every parsed file, whatever the machine's speed.
    if time.monotonic() >= deadline:
        raise ExecError(ErrorCode.TIMEOUT, "extraction exceeded the time limit")
    imports = list(dict.fromkeys(raw_imports))
    symbols = [s for s, _ in pairs]

    entries = [SummaryEntry(sym, functools.partial(docs.doc_of, lang, source, d.node)) for sym, d in pairs]
    summary = build_summary(
        path=path,
        language=lang,
        lines=lines,
        entries=entries,
        imports=imports,
        module_doc=docs.module_doc(lang, source, tree.root_node),
    )
    return FileResult(
        path=path,
        language=lang,
        lines=lines,
        symbols=symbols,
        imports=imports,
        summary=summary,
        executor=EXECUTOR_NAME,
        input_sha256=sha,
        bytes_in=len(source),
        executor_version=deterministic_version(),
    )
