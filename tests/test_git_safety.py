"""Issue 10 items 5 and 6: git on an untrusted directory runs none of its commands, and a repo
URL's credentials are never published, logged or stored.

On the old code `take_snapshot` ran the repository's core.fsmonitor (and a clone ran the hooks
and fsmonitor of the user's global config), so the marker files appear and these tests fail.
"""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from pylon.repomap.gitsafe import public_repo, scrub
from pylon.repomap.snapshot import SnapshotError, clone, snapshot_repo, take_snapshot


def git(root: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.org", *args],
        cwd=root,
        check=True,
        capture_output=True,
    )


def make_repo(root: Path, files: dict[str, bytes] | None = None) -> Path:
    root.mkdir(parents=True)
    for name, data in (files or {"app.py": b"def main():\n    return 1\n"}).items():
        (root / name).write_bytes(data)
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "init")
    return root


def marker_script(tmp_path: Path, name: str) -> tuple[Path, Path]:
    marker = tmp_path / f"{name}.ran"
    script = tmp_path / f"{name}.sh"
    script.write_text(f"#!/bin/sh\ntouch {marker}\n")
    script.chmod(0o755)
    return script, marker


def test_a_repos_fsmonitor_does_not_run_during_the_snapshot(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "evil")
    script, marker = marker_script(tmp_path, "fsmonitor")
    git(repo, "config", "core.fsmonitor", str(script))
    snap = take_snapshot(repo)
    assert [f.path for f in snap.files] == ["app.py"]  # git still listed the files
    assert not marker.exists(), "the repository's core.fsmonitor ran"


def test_global_config_hooks_and_fsmonitor_do_not_run_on_clone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = make_repo(tmp_path / "src")
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    hook, hook_marker = marker_script(tmp_path, "hook")
    (hooks / "post-checkout").symlink_to(hook)
    fsmon, fs_marker = marker_script(tmp_path, "fsmon")
    home = tmp_path / "home"
    home.mkdir()
    (home / ".gitconfig").write_text(f"[core]\n\thooksPath = {hooks}\n\tfsmonitor = {fsmon}\n")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("GIT_CONFIG_GLOBAL", raising=False)
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    snap = snapshot_repo(f"file://{src}", tmp_path / "clone")
    assert [f.path for f in snap.files] == ["app.py"]
    assert not hook_marker.exists(), "a post-checkout hook ran"
    assert not fs_marker.exists(), "core.fsmonitor ran"


def test_only_the_typed_transport_is_allowed(tmp_path: Path) -> None:
    src = make_repo(tmp_path / "src")
    with pytest.raises(SnapshotError, match="transport 'ext' not allowed"):
        clone(f"ext::sh -c touch% {tmp_path}/x", tmp_path / "c1")  # protocol.allow=never
    assert not (tmp_path / "x").exists()
    with pytest.raises(SnapshotError, match="not supported"):
        clone("ftp://example.org/repo.git", tmp_path / "c2")
    assert clone(f"file://{src}", tmp_path / "c3").joinpath("app.py").exists()


def test_a_clone_over_its_size_bound_is_stopped_and_removed(tmp_path: Path) -> None:
    src = make_repo(tmp_path / "src", {"blob.py": os.urandom(3 * 1024 * 1024).hex().encode()})
    dest = tmp_path / "big"
    with pytest.raises(SnapshotError, match="MiB"):
        clone(f"file://{src}", dest, max_bytes=1024 * 1024)
    assert not dest.exists()


def test_a_hanging_clone_is_killed_at_its_timeout(tmp_path: Path) -> None:
    """An http server that accepts and never answers: git (and git-remote-http) are killed."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except TimeoutError:
                continue

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    try:
        start = time.monotonic()
        url = f"http://user:s3cr3t-token@127.0.0.1:{listener.getsockname()[1]}/repo.git"
        with pytest.raises(SnapshotError) as info:
            clone(url, tmp_path / "hang", timeout_s=1.0)
        assert time.monotonic() - start < 30
        assert "timed out" in str(info.value) and "s3cr3t-token" not in str(info.value)
    finally:
        stop.set()
        t.join()
        for s in held:
            s.close()
        listener.close()


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://user:tok3n@github.com/o/r.git", "https://github.com/o/r.git"),
        ("https://tok3n@github.com/o/r?access_token=abc#frag", "https://github.com/o/r"),
        ("https://github.com:8443/o/r", "https://github.com:8443/o/r"),
        ("ssh://git:pw@host/o/r", "ssh://host/o/r"),
        ("git@github.com:o/r.git", "github.com:o/r.git"),
        ("/home/me/repo", "/home/me/repo"),
    ],
)
def test_public_repo_strips_userinfo_and_query(url: str, shown: str) -> None:
    assert public_repo(url) == shown


def test_scrub_removes_the_secret_from_gits_words() -> None:
    url = "https://bob:tok3n-xyz@host/r.git"
    said = f"fatal: unable to access '{url}': could not resolve; tried tok3n-xyz"
    assert "tok3n-xyz" not in scrub(said, url)
