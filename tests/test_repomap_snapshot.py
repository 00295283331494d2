"""Snapshots of real git repositories (and plain trees): what is mapped, what is skipped and why."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest

from pylon.repomap.snapshot import (
    SnapshotError,
    clone,
    is_url,
    read_file,
    snapshot_repo,
    take_snapshot,
)

GIT_ENV = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.com",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.com",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
}


def git(cwd: Path, *args: str) -> str:
    env = {**os.environ, **GIT_ENV}
    proc = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=True)
    return proc.stdout.strip()


def write(root: Path, rel: str, data: str | bytes) -> Path:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, bytes):
        p.write_bytes(data)
    else:
        p.write_text(data, encoding="utf-8")
    return p


# What make_tree() skips, by reason, with max_file_bytes=1000.
EXPECTED_SKIPPED = {
    "binary": 2,  # image.bin (NUL bytes), latin1.py (not UTF-8)
    "empty": 1,  # pkg/__init__.py
    "oversized": 1,  # big.py
    "symlink": 1,  # alias.py -> main.py (its target is mapped on its own)
    "symlink_escape": 1,  # leak.py -> outside the root
    "unsupported": 2,  # data.csv, .gitignore
    "vendored": 4,  # node_modules/…, dist/…, app.min.js, package-lock.json
}
EXPECTED_FILES = {"README.md", "main.py", "pkg/mod.py", "tool", "web/app.ts"}


def make_tree(root: Path, outside: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    write(root, ".gitignore", "ignored.py\nlogs/\n*.tmp\n")
    write(root, "ignored.py", "print('ignored')\n")
    write(root, "logs/run.py", "print('ignored dir')\n")
    write(root, "scratch.tmp", "x\n")
    write(root, "main.py", "from pkg.mod import thing\n\nthing()\n")
    write(root, "pkg/__init__.py", "")
    write(root, "pkg/mod.py", "def thing():\n    return 1\n")
    write(root, "web/app.ts", "export const x = 1;\n")
    write(root, "tool", "#!/usr/bin/env python3\nprint('a script without an extension')\n")
    write(root, "README.md", "# Demo\n\nA demo repository.\n")
    write(root, "image.bin", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    write(root, "latin1.py", "café = 1\n".encode("latin-1"))
    write(root, "node_modules/left-pad/index.js", "module.exports = 1;\n")
    write(root, "dist/bundle.js", "var a=1;\n")
    write(root, "app.min.js", "var a=1;\n")
    write(root, "package-lock.json", "{}\n")
    write(root, "big.py", "x = 1\n" * 400)  # 2400 bytes
    write(root, "data.csv", "a,b\n1,2\n")
    write(outside, "secret.py", "TOKEN = 'do not map me'\n")
    (root / "leak.py").symlink_to(outside / "secret.py")
    (root / "alias.py").symlink_to("main.py")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    make_tree(root, tmp_path / "outside")
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "first")
    return root


def test_git_repo_skips_each_reason_and_counts_it(repo: Path) -> None:
    snap = take_snapshot(repo, max_file_bytes=1000)
    assert {f.path for f in snap.files} == EXPECTED_FILES
    assert snap.skipped == EXPECTED_SKIPPED
    assert snap.commit == git(repo, "rev-parse", "HEAD")
    assert snap.root == str(repo.resolve())
    langs = {f.path: f.language for f in snap.files}
    assert langs == {
        "README.md": "text",
        "main.py": "python",
        "pkg/mod.py": "python",
        "tool": "python",  # from its #! line
        "web/app.ts": "typescript",
    }
    for f in snap.files:
        data = (repo / f.path).read_bytes()
        assert f.size == len(data)
        assert f.sha256 == hashlib.sha256(data).hexdigest()


def test_snapshot_reads_the_work_tree_as_it_is(repo: Path) -> None:
    before = take_snapshot(repo, max_file_bytes=1000)
    write(repo, "main.py", "print('edited, not committed')\n")
    write(repo, "new_module.py", "NEW = True\n")  # untracked, not ignored
    (repo / "pkg/mod.py").unlink()  # deleted in the work tree: gone, and not counted as a skip
    after = take_snapshot(repo, max_file_bytes=1000)
    paths = {f.path for f in after.files}
    assert "new_module.py" in paths and "pkg/mod.py" not in paths
    main = next(f for f in after.files if f.path == "main.py")
    assert main.sha256 == hashlib.sha256(b"print('edited, not committed')\n").hexdigest()
    assert after.skipped == EXPECTED_SKIPPED
    assert after.snapshot_sha256 != before.snapshot_sha256
    assert after.commit == before.commit


def test_snapshot_hash_is_over_sorted_path_and_hash_lines(repo: Path) -> None:
    snap = take_snapshot(repo, max_file_bytes=1000)
    assert [f.path for f in snap.files] == sorted(f.path for f in snap.files)
    lines = "".join(f"{f.path}\0{f.sha256}\n" for f in snap.files)
    assert snap.snapshot_sha256 == hashlib.sha256(lines.encode()).hexdigest()
    assert take_snapshot(repo, max_file_bytes=1000).snapshot_sha256 == snap.snapshot_sha256


def test_plain_tree_outside_git_honours_gitignore_the_same_way(tmp_path: Path) -> None:
    root = tmp_path / "plain"
    make_tree(root, tmp_path / "outside")
    snap = take_snapshot(root, max_file_bytes=1000)
    assert snap.commit == ""
    assert {f.path for f in snap.files} == EXPECTED_FILES
    assert snap.skipped == EXPECTED_SKIPPED


def test_plain_tree_nested_gitignore_negation_and_dir_symlink(tmp_path: Path) -> None:
    root = tmp_path / "plain"
    write(root, ".gitignore", "*.gen.py\n!keep.gen.py\n/top_only.py\n")
    write(root, "a.gen.py", "x = 1\n")
    write(root, "keep.gen.py", "x = 1\n")
    write(root, "top_only.py", "x = 1\n")
    write(root, "sub/top_only.py", "x = 1\n")  # the anchored pattern does not reach here
    write(root, "sub/.gitignore", "local.py\n")
    write(root, "sub/local.py", "x = 1\n")
    write(root, "other/local.py", "x = 1\n")  # sub's .gitignore does not reach a sibling
    (tmp_path / "elsewhere").mkdir()
    write(tmp_path / "elsewhere", "x.py", "x = 1\n")
    (root / "linked_dir").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    snap = take_snapshot(root)
    assert {f.path for f in snap.files} == {"keep.gen.py", "sub/top_only.py", "other/local.py"}
    assert snap.skipped == {"symlink_escape": 1, "unsupported": 2}  # the two .gitignore files


def test_max_files_keeps_the_shallowest_files(tmp_path: Path) -> None:
    root = tmp_path / "r"
    for rel in ("a.py", "z.py", "deep/b.py", "deep/er/c.py"):
        write(root, rel, "x = 1\n")
    snap = take_snapshot(root, max_files=2)
    assert [f.path for f in snap.files] == ["a.py", "z.py"]
    assert snap.skipped == {"max_files": 2}


def test_empty_and_binary_only_repos_give_zero_files(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    git(empty, "init", "-q")
    snap = take_snapshot(empty)
    assert snap.files == [] and snap.commit == "" and snap.skipped == {}
    binaries = tmp_path / "bin"
    write(binaries, "a.py", b"\x00\x01\x02")
    write(binaries, "b.png", b"\x89PNG\x00")
    snap = take_snapshot(binaries)
    assert snap.files == [] and snap.skipped == {"binary": 2}
    assert snap.snapshot_sha256 == hashlib.sha256(b"").hexdigest()


def test_not_a_directory_is_a_snapshot_error(tmp_path: Path) -> None:
    with pytest.raises(SnapshotError, match="not a directory"):
        take_snapshot(tmp_path / "missing")
    with pytest.raises(SnapshotError, match="no such directory"):
        snapshot_repo(str(tmp_path / "missing"), tmp_path / "clone")


def test_read_file_returns_validated_text(repo: Path) -> None:
    snap = take_snapshot(repo, max_file_bytes=1000)
    main = next(f for f in snap.files if f.path == "main.py")
    assert read_file(repo, "main.py", expected_sha256=main.sha256).startswith("from pkg.mod import")
    with pytest.raises(SnapshotError, match="not valid UTF-8"):
        read_file(repo, "latin1.py")
    for bad in ("../outside/secret.py", "/etc/passwd", ""):
        with pytest.raises(SnapshotError, match="repo-relative"):
            read_file(repo, bad)
    with pytest.raises(SnapshotError, match="outside the snapshot root"):
        read_file(repo, "leak.py")
    write(repo, "main.py", "changed = True\n")
    with pytest.raises(SnapshotError, match="changed since the snapshot"):
        read_file(repo, "main.py", expected_sha256=main.sha256)
    with pytest.raises(SnapshotError, match="cannot read"):
        read_file(repo, "nope.py")


def test_is_url() -> None:
    for url in (
        "https://github.com/a/b",
        "http://x/y.git",
        "file:///tmp/r",
        "ssh://git@h/r",
        "git@github.com:a/b",
    ):
        assert is_url(url), url
    for path in ("/tmp/repo", "repo", "./a/b", "C:/x", "~/src/x"):
        assert not is_url(path), path


def test_clone_file_url_is_shallow_and_snapshots(repo: Path, tmp_path: Path) -> None:
    write(repo, "second.py", "y = 2\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "second")
    url = repo.resolve().as_uri()
    snap = snapshot_repo(url, tmp_path / "clone", max_file_bytes=1000)
    dest = tmp_path / "clone"
    assert git(dest, "rev-parse", "--is-shallow-repository") == "true"
    assert git(dest, "rev-list", "--count", "HEAD") == "1"
    assert snap.repo == url and snap.commit == git(repo, "rev-parse", "HEAD")
    # Only committed files travel: the ignored and untracked ones stay behind.
    assert {f.path for f in snap.files} == EXPECTED_FILES | {"second.py"}


def test_clone_bad_url_raises_with_gits_message(tmp_path: Path) -> None:
    with pytest.raises(SnapshotError) as err:
        clone((tmp_path / "no-such-repo").as_uri(), tmp_path / "dest")
    assert "git clone" in str(err.value) and "does not appear to be a git repository" in str(err.value)
    assert not (tmp_path / "dest").exists() or not any((tmp_path / "dest").iterdir())


def test_clone_refuses_a_non_empty_destination(repo: Path, tmp_path: Path) -> None:
    dest = tmp_path / "busy"
    write(dest, "keep.txt", "mine\n")
    with pytest.raises(SnapshotError, match="not empty"):
        clone(repo.as_uri(), dest)
    assert (dest / "keep.txt").read_text() == "mine\n"


def test_subdirectory_of_a_repo_lists_only_its_files(repo: Path) -> None:
    snap = take_snapshot(repo / "pkg")
    assert [f.path for f in snap.files] == ["mod.py"]
    assert snap.skipped == {"empty": 1}


@pytest.mark.parametrize("in_git", [False, True])
def test_a_file_name_that_is_not_utf8_is_skipped(tmp_path: Path, in_git: bool) -> None:
    root = tmp_path / "r"
    root.mkdir()
    if in_git:
        git(root, "init", "-q")
    (root / "ok.py").write_text("x = 1\n")
    with open(os.path.join(os.fsencode(root), b"caf\xe9.py"), "wb") as fh:
        fh.write(b"x = 1\n")
    snap = take_snapshot(root)
    assert [f.path for f in snap.files] == ["ok.py"]
    assert snap.skipped == {"bad_path": 1}


def test_a_directory_the_enclosing_repo_ignores_is_walked(repo: Path) -> None:
    write(repo, ".gitignore", "ignored.py\nlogs/\n*.tmp\nenv/\n")
    write(repo, "env/lib/mod.py", "x = 1\n")
    write(repo, "env/.gitignore", "skip.py\n")
    write(repo, "env/skip.py", "x = 1\n")
    snap = take_snapshot(repo / "env")
    assert [f.path for f in snap.files] == ["lib/mod.py"]
    assert snap.commit == ""  # not the enclosing repo's commit: these files are not in it
