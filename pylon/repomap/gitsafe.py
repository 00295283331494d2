"""Run git on a repository we do not trust, and say which repository it was without secrets.

A directory to map may carry its own `.git/config`, and `core.fsmonitor`, `core.hooksPath`,
`core.sshCommand` and friends there are commands git runs for us. So every git call gets:
no system or global config (`GIT_CONFIG_NOSYSTEM`, `GIT_CONFIG_GLOBAL=/dev/null`), command-line
overrides (which beat the repo's config) turning fsmonitor and hooks off, `protocol.allow=never`
with only the scheme the user typed let through, no prompts, its own process group killed
whole on timeout, and for a clone a bound on the bytes it may write.

A repo URL such as `https://user:token@host/repo?x=y` must never be published (the signed run
root), logged or stored: `public_repo` is the form used everywhere but the clone itself.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

MAX_CLONE_BYTES = 512 * 1024 * 1024
_SIZE_CHECK_S = 0.5

# Overrides on every call: they take precedence over the repository's own config.
SAFE_CONFIG: tuple[str, ...] = (
    "core.fsmonitor=false",
    "core.hooksPath=/dev/null",
    "core.untrackedCache=false",
    "core.sshCommand=ssh -o BatchMode=yes",
    "core.askPass=",
    "credential.helper=",
    "submodule.recurse=false",
    "protocol.allow=never",
)
# Environment a caller's shell may have set that would point git elsewhere or run commands.
_DROP_ENV = ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY", "GIT_CONFIG",
             "GIT_CONFIG_PARAMETERS", "GIT_CONFIG_COUNT", "GIT_EXEC_PATH", "GIT_SSH", "GIT_SSH_COMMAND",
             "GIT_ASKPASS", "SSH_ASKPASS", "GIT_EXTERNAL_DIFF", "GIT_PAGER", "GIT_EDITOR",
             "GIT_TEMPLATE_DIR", "GIT_ALTERNATE_OBJECT_DIRECTORIES", "GIT_PROXY_COMMAND")  # fmt: skip


class GitFailed(Exception):
    def __init__(self, message: str, *, timed_out: bool = False, too_big: bool = False) -> None:
        super().__init__(message)
        self.timed_out = timed_out
        self.too_big = too_big


def public_repo(repo: str) -> str:
    """`repo` without userinfo, query or fragment: what may be published, logged and stored."""
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", repo):
        try:
            parts = urlsplit(repo)
        except ValueError:
            return "(unparseable url)"
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        try:
            port = parts.port
        except ValueError:
            port = None
        netloc = f"{host}:{port}" if port else host
        return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
    m = re.match(r"^[^@/]+@([\w.-]+:.*)$", repo)  # scp-like user@host:path
    if m:
        return m.group(1)
    return repo


def scrub(text: str, repo: str) -> str:
    """Remove `repo`'s secrets from git's own words (it may echo the URL it was given)."""
    out = text.replace(repo, public_repo(repo))
    if "://" in repo:
        try:
            parts = urlsplit(repo)
        except ValueError:
            return out
        for secret in (parts.password, parts.username, parts.query):
            if secret and len(secret) >= 4:
                out = out.replace(secret, "***")
    return out


def allowed_protocol(url: str) -> str:
    """The one transport a clone of `url` may use: the scheme the user typed."""
    if re.match(r"^[^@/]+@[\w.-]+:", url) and "://" not in url:
        return "ssh"
    scheme = url.split("://", 1)[0].lower() if "://" in url else "file"
    if scheme in ("git+ssh", "ssh+git"):
        return "ssh"
    if scheme not in ("https", "http", "ssh", "file"):
        raise GitFailed(f"{scheme}:// repositories are not supported: use https, ssh or a local path")
    return scheme


def git_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _DROP_ENV}
    env.update(
        GIT_CONFIG_NOSYSTEM="1",
        GIT_CONFIG_GLOBAL=os.devnull,
        GIT_TERMINAL_PROMPT="0",  # a run must fail, not hang on a password prompt
        GIT_PAGER="cat",
        GIT_OPTIONAL_LOCKS="0",  # `ls-files` must not write to a repository it only reads
        LC_ALL="C",
    )
    return env


def git_argv(args: Sequence[str], protocol: str | None = None) -> list[str]:
    argv = ["git"]
    for item in SAFE_CONFIG:
        argv += ["-c", item]
    if protocol is not None:
        argv += ["-c", f"protocol.{protocol}.allow=always"]
    return [*argv, *args]


def run_git(
    args: Sequence[str],
    *,
    cwd: Path | None = None,
    timeout_s: float = 120,
    protocol: str | None = None,
    watch_dir: Path | None = None,
    max_bytes: int = MAX_CLONE_BYTES,
) -> subprocess.CompletedProcess[bytes]:
    """Run git safely; GitFailed on a timeout or when `watch_dir` grows past `max_bytes`.

    git and everything it starts (ssh, remote helpers) share a new process group that is
    SIGKILLed as a whole when the call runs over.
    """
    proc = subprocess.Popen(
        git_argv(args, protocol),
        cwd=cwd,
        env=git_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            step = min(_SIZE_CHECK_S, max(0.0, deadline - time.monotonic()))
            try:
                out, err = proc.communicate(timeout=step)
            except subprocess.TimeoutExpired:
                pass
            else:
                if watch_dir is not None and _tree_bytes(watch_dir) > max_bytes:
                    raise GitFailed(f"more than {max_bytes // (1024 * 1024)} MiB", too_big=True)
                return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
            if time.monotonic() >= deadline:
                raise GitFailed(f"timed out after {timeout_s:g}s", timed_out=True)
            if watch_dir is not None and _tree_bytes(watch_dir) > max_bytes:
                raise GitFailed(f"more than {max_bytes // (1024 * 1024)} MiB", too_big=True)
    finally:
        if proc.returncode is None:
            _kill_group(proc)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()
    proc.communicate()


def _tree_bytes(root: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                pass
    return total
