"""Facts for overview.md that keep it from misleading a newcomer.

- What each mapped file is (`classify`): the repo's own code, its tests, test fixtures (other
  people's code kept as test data), vendored copies, or docs. Only code counts as the repo's
  languages; the rest is listed as what it is.
- The build and config files a developer reads first (`build_files`): pyproject.toml, a
  justfile, scripts/*, CI files. Most have no language the executors parse, so a run skips
  them; the overview names them anyway.
- How to build and test it, when the repo says so (`build_commands`): justfile recipes,
  Makefile targets, package.json and pyproject scripts, command lines in the README.
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path, PurePosixPath

CODE = "code"
TEST = "test"
FIXTURE = "fixture"
VENDORED = "vendored"
DOCS = "docs"
KIND_LABELS = {
    CODE: "the repo's own code",
    TEST: "tests",
    FIXTURE: "test fixtures and data",
    VENDORED: "vendored copies of other code",
    DOCS: "docs (READMEs)",
}

_TEST_DIRS = frozenset({"test", "tests", "__tests__", "spec", "specs", "testing", "t"})
_FIXTURE_DIRS = frozenset(
    {"fixtures", "fixture", "__fixtures__", "testdata", "test_data", "test-data", "__snapshots__", "corpus"}
)
_VENDORED_DIRS = frozenset(
    {"_vendor", "vendored", "vendor", "third_party", "third-party", "external", "extern"}
)
_TEST_FILE_RE = re.compile(r"(^test_.*|.*_test\.\w+|.*\.(test|spec)\.\w+|conftest\.py)$")

MAX_README_BYTES = 256 * 1024
MAX_COMMANDS = 16


def classify(path: str, language: str) -> str:
    dirs = [d.lower() for d in path.split("/")[:-1]]
    if any(d in _VENDORED_DIRS for d in dirs):
        return VENDORED
    in_tests = any(d in _TEST_DIRS for d in dirs)
    if any(d in _FIXTURE_DIRS for d in dirs) or (in_tests and any(d in ("data", "samples") for d in dirs)):
        return FIXTURE
    if in_tests or _TEST_FILE_RE.match(path.split("/")[-1]):
        return TEST
    if language == "text":
        return DOCS
    return CODE


_BUILD_NAMES = frozenset(
    {
        "pyproject.toml", "setup.py", "setup.cfg", "tox.ini", "noxfile.py", "justfile", ".justfile",
        "makefile", "gnumakefile", "cmakelists.txt", "meson.build", "package.json", "tsconfig.json",
        "cargo.toml", "go.mod", "pom.xml", "build.gradle", "build.gradle.kts", "settings.gradle",
        "dockerfile", "docker-compose.yml", "docker-compose.yaml", "compose.yaml", "compose.yml",
        ".pre-commit-config.yaml", "gemfile", "rakefile", "taskfile.yml", ".gitlab-ci.yml",
        "requirements.txt", "requirements-dev.txt", "environment.yml", "build.rs", "build.zig",
        "deno.json", "flake.nix", "shell.nix", "uv.lock", "poetry.lock", "cargo.lock",
    }
)  # fmt: skip
_BUILD_DIRS = ("scripts/", "bin/", ".ci/", "ci/", ".github/workflows/", ".circleci/", "tools/")


def is_build_file(path: str) -> bool:
    name = PurePosixPath(path).name.lower()
    if name in _BUILD_NAMES or (name.startswith("requirements") and name.endswith(".txt")):
        return path.count("/") <= 1
    return path.startswith(_BUILD_DIRS) and path.count("/") <= 2


def build_files(mapped: list[str], skipped_files: dict[str, list[str]]) -> list[tuple[str, str]]:
    """(path, how the run treated it) of the build, CI and script files, shallow first."""
    out = [(p, "mapped") for p in mapped if is_build_file(p)]
    for reason, paths in skipped_files.items():
        out += [(p, f"skipped: {reason}") for p in paths if is_build_file(p)]
    return sorted(set(out), key=lambda t: (t[0].count("/"), t[0]))


# --- how to build and test ------------------------------------------------------------------


def _read(root: Path, name: str) -> str | None:
    p = root / name
    try:
        if not p.is_file() or p.is_symlink() or p.stat().st_size > MAX_README_BYTES:
            return None
        return p.read_text("utf-8", errors="replace")
    except OSError:
        return None


_RECIPE_RE = re.compile(r"^@?([A-Za-z_][\w-]*)(?:\s+[^:=]*)?:(?!=)")
_MAKE_RE = re.compile(r"^([A-Za-z][\w.-]*)\s*:(?!=)")
_WANTED = re.compile(r"\b(test|tests|check|build|setup|install|lint|bench|demo|dev|ci|run|fmt|format)\b")


def _justfile(text: str) -> list[tuple[str, str]]:
    out = []
    comment = ""
    for line in text.splitlines():
        if line.startswith("#"):
            comment = line.lstrip("#").strip()
            continue
        m = _RECIPE_RE.match(line)
        if m and not line.startswith((" ", "\t")) and ":=" not in line:
            out.append((f"just {m.group(1)}", comment or "justfile recipe"))
        comment = ""
    return out


def _makefile(text: str) -> list[tuple[str, str]]:
    out = []
    for line in text.splitlines():
        m = _MAKE_RE.match(line)
        if m and not m.group(1).startswith(".") and "%" not in m.group(1):
            out.append((f"make {m.group(1)}", "Makefile target"))
    return [c for c in out if _WANTED.search(c[0])] or out[:6]


_FENCE_RE = re.compile(r"^```\s*(\w*)")
_SHELL_LANGS = ("", "bash", "sh", "shell", "console", "zsh", "shell-session")
_COMMAND_RE = re.compile(
    r"^(?:\$ )?((?:\./|\.venv/bin/)?(?:just|make|pytest|tox|nox|uv|pip|python3?|npm|pnpm|yarn|cargo|go|"
    r"mvn|gradle|\./gradlew|cmake|bazel|docker|scripts/|\./scripts/)\S*(?: .*)?)$"
)


def _readme(text: str) -> list[tuple[str, str]]:
    out = []
    fence: str | None = None
    for raw in text.splitlines():
        line = raw.strip()
        m = _FENCE_RE.match(line)
        if m:
            fence = None if fence is not None else m.group(1).lower()
            continue
        if fence is None or fence not in _SHELL_LANGS:
            continue
        cmd = line.split("  #")[0].strip()
        c = _COMMAND_RE.match(cmd)
        if c and _WANTED.search(cmd):
            comment = line.split("#", 1)[1].strip() if "  #" in line else "README"
            out.append((c.group(1).strip(), comment))
    return out


def build_commands(root: Path | None) -> list[tuple[str, str]]:
    """(command, what the repo says of it), in the repo's own words, most specific first."""
    if root is None:
        return []
    found: list[tuple[str, str]] = []
    for name in ("justfile", "Justfile", ".justfile"):
        text = _read(root, name)
        if text:
            found += _justfile(text)
            break
    for name in ("Makefile", "makefile", "GNUmakefile"):
        text = _read(root, name)
        if text:
            found += _makefile(text)
            break
    pkg = _read(root, "package.json")
    if pkg:
        try:
            scripts = json.loads(pkg).get("scripts", {})
        except (ValueError, AttributeError):
            scripts = {}
        if isinstance(scripts, dict):
            found += [(f"npm run {k}", str(v)[:80]) for k, v in scripts.items() if isinstance(k, str)]
    py = _read(root, "pyproject.toml")
    if py:
        try:
            data = tomllib.loads(py)
        except ValueError:
            data = {}
        tool = data.get("tool", {}) if isinstance(data, dict) else {}
        for table, runner in (("poe", "poe"), ("pdm", "pdm run"), ("hatch", "hatch run")):
            section = tool.get(table, {}) if isinstance(tool, dict) else {}
            tasks = (
                section.get("tasks" if table == "poe" else "scripts", {}) if isinstance(section, dict) else {}
            )
            if isinstance(tasks, dict):
                found += [(f"{runner} {k}", f"pyproject [tool.{table}]") for k in tasks]
        if isinstance(tool, dict) and "pytest" in tool:
            found.append(("pytest", "pyproject [tool.pytest]"))
    for name in ("README.md", "README.rst", "README", "README.txt"):
        text = _read(root, name)
        if text:
            found += _readme(text)
            break
    scripts_dir = root / "scripts"
    if scripts_dir.is_dir() and not scripts_dir.is_symlink():
        for p in sorted(scripts_dir.iterdir())[:50]:
            if p.is_file() and _WANTED.search(p.stem.replace("_", " ").replace("-", " ")):
                found.append((f"./scripts/{p.name}", "script"))
    seen: set[str] = set()
    unique = []
    for cmd, why in found:
        if cmd not in seen:
            seen.add(cmd)
            unique.append((cmd, why))
    return unique[:MAX_COMMANDS]
