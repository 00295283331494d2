"""Symbol recall of the deterministic executor against universal-ctags, on real third-party code.

The corpus under tests/fixtures/corpus/<language>/<package>/ is copied from published packages
(PyPI sdists, npm tarballs, Debian -dev packages), each with its licence beside it. The ctags
reference is stored in ctags_reference.json so the test needs neither network nor ctags; a
second test re-runs ctags live where it is installed. Regenerate the stored reference with

    .venv/bin/python tests/test_executor_ctags_recall.py

A ctags tag counts as matched when a symbol of ours has the same name on the same line, or
one line away (ctags and tree-sitter disagree on which line a decorated or wrapped definition
starts). Kinds are not compared: each side names kinds its own way, and a name on the right
line is the definition.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from pylon.executors.deterministic import extract_file
from pylon.executors.languages import detect_language

CORPUS = Path(__file__).parent / "fixtures" / "corpus"
REFERENCE = CORPUS / "ctags_reference.json"
LANGUAGES = ("python", "javascript", "typescript", "go", "rust", "java", "c")
MIN_RECALL = 0.9
# Precision is reported and guarded against regressions only. ctags 5.9's TypeScript parser
# loses track of classes with overloads or generics (Observable.ts: 8 tags for a 500-line
# class), so our correct methods there count as "extra".
MIN_PRECISION = {"typescript": 0.6}
DEFAULT_MIN_PRECISION = 0.85

CTAGS_LANGUAGE = {
    "python": "Python",
    "javascript": "JavaScript",
    "typescript": "TypeScript",
    "go": "Go",
    "rust": "Rust",
    "java": "Java",
    "c": "C",
}

# ctags kinds that are definitions. Left out everywhere: imports (Python namespace/module/
# unknown, Go packageName, C header), locals and parameters (off by default in ctags anyway),
# JS `property` (keys of object literals: data, not definitions).
DEFINITION_KINDS: dict[str, frozenset[str]] = {
    lang: frozenset(kinds.split())
    for lang, kinds in {
        "python": "class function member variable",
        "javascript": "class function method generator getter setter constant variable field",
        "typescript": "class interface enum enumerator function method namespace alias constant "
        "variable property generator",
        "go": "package func const type var struct interface member anonMember methodSpec talias",
        "rust": "macro method implementation enumerator function enum interface field module struct "
        "typedef variable",
        "java": "annotation class enumConstant field enum interface method package",
        "c": "macro enumerator function enum member struct typedef union variable",
    }.items()
}

# An indented `const`/`let`/`var` (or `this.x =`) in JS/TS is inside a function or block: a
# local. ctags 5.9 reports some of them when it loses track of the enclosing function.
_JS_LOCAL = re.compile(r"/\^\s+(.*\W)?(const|let|var|this\.)\W")


def _is_definition(language: str, tag: dict[str, object]) -> bool:
    name = str(tag["name"])
    kind = str(tag["kind"])
    pattern = str(tag.get("pattern", ""))
    if kind not in DEFINITION_KINDS[language]:
        return False
    if name.startswith(("__anon", "AnonymousFunction")):
        return False  # names ctags makes up for anonymous structs and functions
    if tag.get("scopeKind") in ("function", "method") and kind in ("constant", "variable"):
        return False  # a local, by ctags' own account
    if pattern.startswith("/^import "):
        return False  # TypeScript `import { type X }` reported as an alias
    if language in ("javascript", "typescript") and _JS_LOCAL.match(pattern):
        return False
    if language == "typescript" and kind == "alias":
        # A real alias reads `type NAME =` or `type NAME<`; ctags 5.9 also reports `type`
        # inside multi-line import lists and `x instanceof Y` expressions as aliases.
        line = pattern.removeprefix("/^").removesuffix("/").removesuffix("$")
        if not re.search(r"\btype\s+" + re.escape(name) + r"\s*(<|=|$)", line):
            return False
    return True


def have_universal_ctags() -> bool:
    ctags = shutil.which("ctags")
    if ctags is None:
        return False
    out = subprocess.run([ctags, "--version"], capture_output=True, text=True, check=False).stdout
    return "Universal Ctags" in out


def ctags_definitions(path: Path, language: str) -> list[tuple[str, int]]:
    """The definitions universal-ctags finds in `path`, as (name, line)."""
    out = subprocess.run(
        [
            "ctags",
            "--output-format=json",
            "--fields=+nZ",
            f"--language-force={CTAGS_LANGUAGE[language]}",
            "-f",
            "-",
            str(path),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    found: set[tuple[str, int]] = set()
    for line in out.splitlines():
        tag = json.loads(line)
        if tag.get("_type") == "tag" and _is_definition(language, tag):
            found.add((str(tag["name"]), int(tag["line"])))
    return sorted(found, key=lambda t: (t[1], t[0]))


def corpus_files() -> list[tuple[str, Path]]:
    files = []
    for path in sorted(CORPUS.rglob("*")):
        language = detect_language(path.name) if path.is_file() else None
        if language is not None:
            files.append((language, path))
    return files


def _ours(path: Path) -> set[tuple[str, int]]:
    result = extract_file(str(path), path.read_text(encoding="utf-8"))
    return {(s.name, s.line) for s in result.symbols}


def _near(found: set[tuple[str, int]], name: str, line: int) -> bool:
    return (name, line) in found or (name, line - 1) in found or (name, line + 1) in found


def score(reference: dict[str, list[tuple[str, int]]]) -> dict[str, tuple[int, int, int, int]]:
    """Per language: (matched reference tags, reference tags, our matched symbols, our symbols)."""
    totals = {lang: [0, 0, 0, 0] for lang in LANGUAGES}
    for language, path in corpus_files():
        rel = path.relative_to(CORPUS).as_posix()
        ref = set(map(tuple, reference[rel]))
        ours = _ours(path)
        t = totals[language]
        t[0] += sum(1 for name, line in ref if _near(ours, name, line))
        t[1] += len(ref)
        t[2] += sum(1 for name, line in ours if _near(ref, name, line))  # type: ignore[arg-type]
        t[3] += len(ours)
    return {lang: (t[0], t[1], t[2], t[3]) for lang, t in totals.items()}


def _check(scores: dict[str, tuple[int, int, int, int]], capsys: pytest.CaptureFixture[str]) -> None:
    lines = []
    failures = []
    for lang, (hit, ref, ok, ours) in scores.items():
        assert ref > 0 and ours > 0, f"no {lang} files in the corpus"
        recall, precision = hit / ref, ok / ours
        lines.append(f"{lang:11} recall {hit}/{ref} = {recall:.3f}   precision {ok}/{ours} = {precision:.3f}")
        if recall < MIN_RECALL:
            failures.append(f"{lang} recall {recall:.3f} < {MIN_RECALL}")
        if precision < MIN_PRECISION.get(lang, DEFAULT_MIN_PRECISION):
            failures.append(f"{lang} precision {precision:.3f}")
    with capsys.disabled():
        print("\n" + "\n".join(lines))
    assert not failures, failures


def test_corpus_covers_each_language_with_licences() -> None:
    by_lang: dict[str, int] = {}
    for language, path in corpus_files():
        by_lang[language] = by_lang.get(language, 0) + 1
        package = path.relative_to(CORPUS).parts[:2]
        licences = list((CORPUS / package[0] / package[1]).glob("LICENSE*"))
        assert licences, f"no LICENSE beside {path}"
    assert {lang: n >= 5 for lang, n in by_lang.items()} == dict.fromkeys(LANGUAGES, True), by_lang


def test_recall_against_stored_ctags_reference(capsys: pytest.CaptureFixture[str]) -> None:
    reference = json.loads(REFERENCE.read_text())
    assert set(reference) == {p.relative_to(CORPUS).as_posix() for _, p in corpus_files()}
    _check(score(reference), capsys)


@pytest.mark.skipif(not have_universal_ctags(), reason="universal-ctags is not installed")
def test_recall_against_live_ctags(capsys: pytest.CaptureFixture[str]) -> None:
    reference = {
        path.relative_to(CORPUS).as_posix(): ctags_definitions(path, language)
        for language, path in corpus_files()
    }
    _check(score(reference), capsys)


def regenerate() -> None:
    reference = {
        path.relative_to(CORPUS).as_posix(): ctags_definitions(path, language)
        for language, path in corpus_files()
    }
    body = ",\n".join(f"{json.dumps(k)}: {json.dumps(v)}" for k, v in sorted(reference.items()))
    REFERENCE.write_text("{\n" + body + "\n}\n")
    print(f"wrote {REFERENCE} ({sum(len(v) for v in reference.values())} tags)")


if __name__ == "__main__":
    regenerate()
