"""Freeze a repository into the list of files a repo-map run sends out.

A local directory is read as it is on disk (uncommitted edits included), honouring
.gitignore: inside a git work tree git itself lists the files; outside one the tree is walked
and .gitignore files are applied by `_IgnoreRules`. Every file left out is counted under one
reason, so a run can say what it did not look at and why.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import re
import shutil
import stat
from collections import Counter
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

from pylon.executors.languages import TEXT_LANGUAGE, detect_language
from pylon.logs import get_logger
from pylon.repomap.gitsafe import MAX_CLONE_BYTES, GitFailed, allowed_protocol, public_repo, run_git, scrub
from pylon.schemas.repomap import Snapshot, SnapshotFile

__all__ = [
    "Snapshot",
    "SnapshotError",
    "SnapshotFile",
    "clone",
    "is_url",
    "read_file",
    "snapshot_repo",
    "take_snapshot",
]

log = get_logger(__name__)

# Directories whose contents are someone else's code or a build's output.
VENDORED_DIRS = frozenset(
    {
        ".git", ".hg", ".svn", "node_modules", "bower_components", "vendor", "third_party",
        "thirdparty", "dist", "build", "target", "out", ".venv", "venv", "__pycache__", ".tox",
        ".nox", ".mypy_cache", ".pytest_cache", ".ruff_cache", ".next", ".nuxt", ".gradle",
        ".idea", ".vscode", "site-packages", ".eggs", "coverage", "htmlcov",
    }
)  # fmt: skip
VENDORED_DIR_SUFFIXES = (".egg-info", ".dist-info")
# Generated or locked files: large, machine-written, and nothing a newcomer reads.
GENERATED_FILES = (
    "*.min.js", "*.min.css", "*.map", "*.bundle.js", "*_pb2.py", "*_pb2_grpc.py", "*.pb.go",
    "*.pb.h", "*.pb.cc", "*.lock", "package-lock.json", "pnpm-lock.yaml", "npm-shrinkwrap.json",
    "go.sum", "bun.lockb",
)  # fmt: skip
_GENERATED_RE = re.compile("|".join(fnmatch.translate(p) for p in GENERATED_FILES))

_BINARY_SNIFF_BYTES = 8000  # git's own heuristic: a NUL in the first 8000 bytes means binary
MAX_NAMED_PER_REASON = 500  # skipped files named per reason (the count is always whole)


class SnapshotError(Exception):
    """The repository cannot be cloned or read; the message says why."""


def is_url(s: str) -> bool:
    """True for something `git clone` must fetch (scheme://… or scp-like user@host:path)."""
    return bool(re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", s) or re.match(r"^[\w.-]+@[\w.-]+:", s))


def clone(url: str, dest: Path, timeout_s: float = 120, max_bytes: int = MAX_CLONE_BYTES) -> Path:
    """`git clone --depth 1 url dest`; returns dest. Any failure raises SnapshotError with git's words.

    Hardened (pylon.repomap.gitsafe): no system/global config, hooks and fsmonitor off, only the
    transport of `url` allowed, the process group killed on timeout, at most `max_bytes` written.
    Messages and logs name the repository by `public_repo(url)`: never its credentials.
    """
    dest = Path(dest)
    shown = public_repo(url)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise SnapshotError(f"clone destination {dest} is not empty")
    existed = dest.exists()
    try:
        protocol = allowed_protocol(url)
    except GitFailed as exc:
        raise SnapshotError(str(exc)) from exc
    args = [
        "clone",
        "--depth",
        "1",
        "--quiet",
        "--no-recurse-submodules",
        "--template=",
        "--",
        url,
        str(dest),
    ]
    try:
        proc = run_git(args, timeout_s=timeout_s, protocol=protocol, watch_dir=dest, max_bytes=max_bytes)
    except GitFailed as exc:
        if not existed:
            shutil.rmtree(dest, ignore_errors=True)
        raise SnapshotError(f"git clone {shown} stopped: {exc}") from exc
    except FileNotFoundError as exc:
        raise SnapshotError("git is not installed (needed to clone a URL)") from exc
    if proc.returncode != 0:
        if not existed:
            shutil.rmtree(dest, ignore_errors=True)
        message = " ".join(proc.stderr.decode("utf-8", "replace").split()) or f"exit status {proc.returncode}"
        raise SnapshotError(f"git clone {shown} failed: {scrub(message, url)}")
    log.info("cloned", url=shown, dest=str(dest))
    return dest


def _git_lines(root: Path, *args: str) -> list[str] | None:
    """NUL-separated output of a git command run in root, or None when git cannot answer."""
    try:
        proc = run_git(args, cwd=root, timeout_s=120)
    except (FileNotFoundError, GitFailed):
        return None
    if proc.returncode != 0:
        return None
    return [p for p in proc.stdout.decode("utf-8", "surrogateescape").split("\0") if p]


def _git_commit(root: Path) -> str:
    out = _git_lines(root, "rev-parse", "--verify", "-q", "HEAD")
    return out[0].strip() if out else ""


# --- .gitignore outside git -----------------------------------------------------------------


def _glob_to_regex(glob: str) -> str:
    """Translate one gitignore glob (already stripped of '!', anchors and a trailing '/')."""
    out: list[str] = []
    i = 0
    while i < len(glob):
        c = glob[i]
        if glob.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif glob.startswith("/**", i) and i + 3 == len(glob):
            out.append("/.*")
            i += 3
        elif glob.startswith("**", i):
            out.append(".*")
            i += 2
        elif c == "*":
            out.append("[^/]*")
            i += 1
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "[":
            end = glob.find("]", i + 2)
            if end == -1:
                out.append(re.escape(c))
                i += 1
            else:
                body = glob[i + 1 : end]
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append("[" + body.replace("\\", "\\\\") + "]")
                i = end + 1
        elif c == "\\" and i + 1 < len(glob):
            out.append(re.escape(glob[i + 1]))
            i += 2
        else:
            out.append(re.escape(c))
            i += 1
    return "".join(out)


class _IgnoreRules:
    """The patterns of one .gitignore, matched against paths relative to its directory."""

    def __init__(self, text: str) -> None:
        self.rules: list[tuple[re.Pattern[str], bool, bool]] = []  # (regex, negated, dir_only)
        for raw in text.splitlines():
            line = raw.rstrip()
            if not line or line.startswith("#"):
                continue
            negated = line.startswith("!")
            if negated:
                line = line[1:]
            elif line.startswith("\\"):
                line = line[1:]
            dir_only = line.endswith("/")
            line = line.rstrip("/")
            if not line:
                continue
            # A slash anywhere but the end anchors the pattern to this directory.
            anchored = "/" in line
            body = _glob_to_regex(line.lstrip("/"))
            regex = re.compile(("" if anchored else "(?:.*/)?") + body + r"\Z", re.DOTALL)
            self.rules.append((regex, negated, dir_only))

    def match(self, rel: str, is_dir: bool) -> bool | None:
        """True: ignored, False: re-included by a '!' rule, None: no rule speaks."""
        verdict: bool | None = None
        for regex, negated, dir_only in self.rules:
            if dir_only and not is_dir:
                continue
            if regex.match(rel):
                verdict = not negated
        return verdict


def _walk(root: Path, skipped: Counter[str], vendored_dirs: list[str]) -> Iterator[str]:
    """Repo-relative posix paths of a tree outside git, honouring every .gitignore in it."""
    stack: list[tuple[str, _IgnoreRules]] = []  # (directory prefix, its rules), outermost first

    def ignored(rel: str, is_dir: bool) -> bool:
        verdict = False
        for prefix, rules in stack:  # every entry is an ancestor of rel; deeper rules win
            v = rules.match(rel[len(prefix) :], is_dir)
            if v is not None:
                verdict = v
        return verdict

    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        rel_dir = Path(dirpath).relative_to(root).as_posix()
        prefix = "" if rel_dir == "." else rel_dir + "/"
        stack = [(p, r) for p, r in stack if prefix.startswith(p)]
        gitignore = Path(dirpath) / ".gitignore"
        if gitignore.is_file() and not gitignore.is_symlink():
            stack.append((prefix, _IgnoreRules(gitignore.read_text("utf-8", errors="replace"))))
        keep: list[str] = []
        for d in sorted(dirnames):
            rel = prefix + d
            if d == ".git" or ignored(rel, is_dir=True):
                continue
            full = Path(dirpath) / d
            if full.is_symlink():
                yield rel  # classified (and counted) like any other symlink
            elif d in VENDORED_DIRS or d.endswith(VENDORED_DIR_SUFFIXES):
                skipped["vendored"] += _count_files(full)
                vendored_dirs.append(rel + "/")
            else:
                keep.append(d)
        dirnames[:] = keep
        for f in sorted(filenames):
            rel = prefix + f
            if not ignored(rel, is_dir=False):
                yield rel


def _count_files(path: Path) -> int:
    return sum(len(files) for _, _, files in os.walk(path, followlinks=False))


# --- classification -------------------------------------------------------------------------


_DOC_SUFFIXES = ("", ".md", ".markdown", ".rst", ".txt")


def _language(rel: str, text: str, include_readmes: bool) -> str | None:
    """The file's language; READMEs are mapped as plain text (they describe their directory)."""
    language = detect_language(rel, text)
    if language is None and include_readmes:
        name = PurePosixPath(rel)
        if name.stem.lower() == "readme" and name.suffix.lower() in _DOC_SUFFIXES:
            return TEXT_LANGUAGE
    return language


def _is_vendored(rel: str) -> bool:
    parts = rel.split("/")
    if any(p in VENDORED_DIRS or p.endswith(VENDORED_DIR_SUFFIXES) for p in parts[:-1]):
        return True
    return bool(_GENERATED_RE.match(parts[-1].lower()))


def _utf8(rel: str) -> bool:
    try:
        rel.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _within(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def _lstat_reason(root: Path, rel: str) -> tuple[str | None, os.stat_result | None]:
    """A skip reason found without reading the file, or (None, its stat)."""
    full = root / rel
    try:
        st = full.lstat()
    except FileNotFoundError:
        return "", None  # listed by git but deleted in the work tree: not part of it, not counted
    if stat.S_ISLNK(st.st_mode):
        target = full.resolve()
        return ("symlink" if _within(target, root) else "symlink_escape"), None
    if stat.S_ISDIR(st.st_mode):
        return "submodule", None  # git lists a submodule as one path that is a directory
    if not stat.S_ISREG(st.st_mode):
        return "special", None
    return None, st


def take_snapshot(
    root: Path,
    *,
    max_file_bytes: int = 1_048_576,
    max_files: int = 2000,
    repo: str | None = None,
    include_readmes: bool = True,
) -> Snapshot:
    """List, hash and classify the files under root. `repo` is what the user typed (default: root).

    Skip reasons: vendored, symlink (in-tree, its target is mapped on its own), symlink_escape,
    submodule, special, bad_path (name not UTF-8), empty, oversized, binary (NUL bytes or not
    UTF-8), unsupported (no language), max_files (past the limit; shallow paths are kept first).
    Code files are those `detect_language` knows (extension or `#!` line); README files come
    along as language "text" unless include_readmes is False.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise SnapshotError(f"{root} is not a directory")
    root = root.resolve()
    skipped: Counter[str] = Counter()
    vendored_dirs: list[str] = []  # whole directories left out unlisted (outside git)
    # Fails (None) outside a work tree, and then the tree is walked instead; so is a directory
    # the enclosing repository ignores (a venv, a vendored checkout), which git lists as empty.
    listed = _git_lines(root, "ls-files", "--cached", "--others", "--exclude-standard", "-z")
    if listed == [] and _git_lines(root, "check-ignore", "-q", ".") is not None:
        listed = None
    if listed is not None:
        candidates = sorted(set(listed))
        commit = _git_commit(root)
    else:
        candidates = list(_walk(root, skipped, vendored_dirs))
        commit = ""
    # Shallow files first, so a max_files cut keeps the top of the tree.
    candidates.sort(key=lambda p: (p.count("/"), p))

    files: list[SnapshotFile] = []
    named: dict[str, list[str]] = {"vendored": vendored_dirs[:MAX_NAMED_PER_REASON]} if vendored_dirs else {}

    def skip(reason: str, rel: str) -> None:
        skipped[reason] += 1
        names = named.setdefault(reason, [])
        if len(names) < MAX_NAMED_PER_REASON:
            names.append(rel)

    for rel in candidates:
        if not _utf8(rel):
            skipped["bad_path"] += 1  # a name no JSON event can carry, nor a listing
            continue
        if _is_vendored(rel):
            skip("vendored", rel)
            continue
        reason, st = _lstat_reason(root, rel)
        if reason is None and st is not None:
            if st.st_size == 0:
                reason = "empty"
            elif st.st_size > max_file_bytes:
                reason = "oversized"
            elif len(files) >= max_files:
                reason = "max_files"
        if reason is None:
            reason, entry = _classify_content(root, rel, max_file_bytes, include_readmes)
            if entry is not None:
                files.append(entry)
                continue
        if reason:
            skip(reason, rel)

    files.sort(key=lambda f: f.path)
    digest = hashlib.sha256()
    for f in files:
        digest.update(f"{f.path}\0{f.sha256}\n".encode())
    snap = Snapshot(
        root=str(root),
        repo=repo if repo is not None else str(root),
        commit=commit,
        files=files,
        skipped=dict(sorted(skipped.items())),
        snapshot_sha256=digest.hexdigest(),
        skipped_files={r: sorted(n) for r, n in sorted(named.items())},
    )
    log.info("snapshot", root=str(root), files=len(files), skipped=snap.skipped)
    return snap


def _classify_content(
    root: Path, rel: str, max_file_bytes: int, include_readmes: bool
) -> tuple[str, SnapshotFile | None]:
    try:
        with open(root / rel, "rb") as fh:
            data = fh.read(max_file_bytes + 1)
    except OSError:
        return "unreadable", None
    if len(data) > max_file_bytes:
        return "oversized", None  # grew since the lstat
    if not data:
        return "empty", None
    if b"\0" in data[:_BINARY_SNIFF_BYTES]:
        return "binary", None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return "binary", None
    language = _language(rel, text, include_readmes)
    if language is None:
        return "unsupported", None
    entry = SnapshotFile(path=rel, size=len(data), sha256=hashlib.sha256(data).hexdigest(), language=language)
    return "", entry


def read_file(snapshot_root: Path, rel: str, *, expected_sha256: str | None = None) -> str:
    """The text of one snapshot file, as sent to a node: strict UTF-8, inside the root.

    With expected_sha256 (the snapshot's hash) a file edited since the snapshot is refused.
    """
    root = Path(snapshot_root).resolve()
    pure = PurePosixPath(rel)
    if pure.is_absolute() or ".." in pure.parts or "\\" in rel or not rel:
        raise SnapshotError(f"{rel!r} is not a repo-relative path")
    full = (root / pure).resolve()
    if not _within(full, root):
        raise SnapshotError(f"{rel} resolves outside the snapshot root")
    try:
        data = full.read_bytes()
    except OSError as exc:
        raise SnapshotError(f"cannot read {rel}: {exc.strerror or exc}") from exc
    if expected_sha256 is not None and hashlib.sha256(data).hexdigest() != expected_sha256:
        raise SnapshotError(f"{rel} changed since the snapshot was taken")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SnapshotError(f"{rel} is not valid UTF-8 (byte {exc.start})") from exc


def snapshot_repo(repo: str, clone_dir: Path, **kwargs: Any) -> Snapshot:
    """Snapshot a local path, or clone a URL into clone_dir (which must be empty) first."""
    if is_url(repo):
        return take_snapshot(clone(repo, Path(clone_dir)), repo=public_repo(repo), **kwargs)
    path = Path(repo).expanduser()
    if not path.exists():
        raise SnapshotError(f"{repo}: no such directory")
    return take_snapshot(path, repo=repo, **kwargs)
