"""Service files: run a node or the buyer under launchd (macOS) or systemd --user (Linux).

The daemons run in the foreground and never fork; the service manager starts them at login,
restarts them when they fail (not after a clean exit such as a finished drain), stops them
with SIGTERM and waits for the drain, and appends their output to PYLON_HOME/logs.

- macOS: a user agent in ~/Library/LaunchAgents, loaded with `launchctl bootstrap gui/UID`.
- Linux: a unit in ~/.config/systemd/user (or $XDG_CONFIG_HOME), `systemctl --user
  daemon-reload` then `enable --now`. A user service stops at logout unless lingering is on
  for the user (`loginctl enable-linger`), which a provider box usually wants.

Unit names carry the role and node name but not PYLON_HOME, so one user account runs one
set of services. Every call of launchctl/systemctl goes through `runner` (subprocess.run by
default) so tests can record the commands instead of touching a real service manager.
"""

from __future__ import annotations

import os
import plistlib
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path
from string import Template
from typing import Any

from pylon.home import pylon_home

ROLES = ("node", "buyer")
PLATFORMS = ("macos", "linux")
LABEL_PREFIX = "dev.pylon"
# launchd agents start with a bare PATH; git and Homebrew tools live in these on a Mac.
MACOS_PATH = "/opt/homebrew/bin:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

Runner = Callable[..., subprocess.CompletedProcess[str]]


class ServiceError(Exception):
    """A service manager refused or is not there; the message says what to do."""


def current_platform() -> str:
    if sys.platform == "darwin":
        return "macos"
    if sys.platform.startswith("linux"):
        return "linux"
    raise ServiceError(f"services are supported on macOS (launchd) and Linux (systemd), not {sys.platform}")


def _check(role: str, name: str | None, platform: str) -> None:
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, not {role!r}")
    if platform not in PLATFORMS:
        raise ValueError(f"platform must be one of {PLATFORMS}, not {platform!r}")
    if name is not None and not _NAME.match(name):
        raise ValueError(f"bad node name {name!r}: use letters, digits, '.', '_' or '-' (at most 64)")
    if role == "buyer" and name is not None:
        raise ValueError("the buyer takes no name")


def service_id(role: str, name: str | None) -> str:
    """node-NAME, node (the CLI's default node) or buyer: the stem of labels and log files."""
    return f"{role}-{name}" if name else role


def label(role: str, name: str | None) -> str:
    """The launchd label, e.g. dev.pylon.node-alice."""
    return f"{LABEL_PREFIX}.{service_id(role, name)}"


def unit_name(role: str, name: str | None) -> str:
    """The systemd unit, e.g. pylon-node-alice.service."""
    return f"pylon-{service_id(role, name)}.service"


def unit_filename(role: str, name: str | None, platform: str) -> str:
    return f"{label(role, name)}.plist" if platform == "macos" else unit_name(role, name)


def unit_dir(platform: str, user_home: Path | None = None) -> Path:
    user_home = user_home or Path.home()
    if platform == "macos":
        return user_home / "Library" / "LaunchAgents"
    xdg = os.environ.get("XDG_CONFIG_HOME")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else user_home / ".config"
    return base / "systemd" / "user"


def unit_path(role: str, name: str | None, *, platform: str, user_home: Path | None = None) -> Path:
    _check(role, name, platform)
    return unit_dir(platform, user_home) / unit_filename(role, name, platform)


def log_path(role: str, name: str | None, home: Path) -> Path:
    return home / "logs" / f"{service_id(role, name)}.log"


def daemon_args(role: str, name: str | None, extra_args: Sequence[str] = ()) -> list[str]:
    """The pylon arguments that run the daemon in the foreground."""
    args = [role, "up"]
    if role == "node" and name:
        args += ["--name", name]
    return args + list(extra_args)


def find_pylon_exe() -> str:
    """The absolute path of the `pylon` executable: beside this interpreter, else on PATH."""
    sibling = Path(sys.executable).with_name("pylon")
    if sibling.is_file() and os.access(sibling, os.X_OK):
        return str(sibling.absolute())
    found = shutil.which("pylon")
    if found:
        return str(Path(found).absolute())
    raise ServiceError("cannot find the `pylon` executable; install pylon or pass its path")


# --- rendering -------------------------------------------------------------------------------


def _template(filename: str) -> str:
    return resources.files("pylon.daemon").joinpath("service_templates", filename).read_text()


def _no_newlines(values: Sequence[str]) -> None:
    for v in values:
        if "\n" in v or "\r" in v or "\0" in v:
            raise ValueError(f"a service file cannot carry {v!r}")


def _sd_value(value: str) -> str:
    """A systemd setting value: % starts a specifier, so it is doubled."""
    return value.replace("%", "%%")


def _sd_word(value: str, *, exec_line: bool = False) -> str:
    """One word of ExecStart= or Environment=, quoted when systemd would split or expand it."""
    value = _sd_value(value)
    if exec_line:
        value = value.replace("$", "$$")  # ExecStart expands $VAR
    if value and not re.search(r"[\s\"'\\;]", value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _render_systemd(role: str, name: str | None, argv: list[str], home: Path) -> str:
    desc = f"Pylon provider node {name}" if role == "node" and name else f"Pylon {role} daemon"
    logs = str(log_path(role, name, home))
    env = [f"Environment={_sd_word(f'PYLON_HOME={home}')}"]
    return Template(_template("systemd.service")).substitute(
        description=_sd_value(desc),
        exec_start=" ".join(_sd_word(a, exec_line=True) for a in argv),
        environment="\n".join(env),
        working_directory=_sd_value(str(home)),
        stdout_path=_sd_value(logs),
        stderr_path=_sd_value(logs),
    )


def _render_launchd(role: str, name: str | None, argv: list[str], home: Path) -> str:
    plist: dict[str, Any] = plistlib.loads(_template("launchd.plist").encode())
    logs = str(log_path(role, name, home))
    exe_dir = str(Path(argv[0]).parent)
    plist.update(
        Label=label(role, name),
        ProgramArguments=argv,
        WorkingDirectory=str(home),
        EnvironmentVariables={"PYLON_HOME": str(home), "PATH": f"{exe_dir}:{MACOS_PATH}"},
        StandardOutPath=logs,
        StandardErrorPath=logs,
    )
    return plistlib.dumps(plist, sort_keys=False).decode()


def render_unit(
    role: str,
    *,
    platform: str,
    name: str | None,
    pylon_exe: str,
    home: Path,
    extra_args: Sequence[str] = (),
) -> tuple[str, str]:
    """(filename, text) of the launchd plist or systemd unit that runs this daemon.

    `name` None for a node runs `pylon node up` without --name (the CLI's default node).
    """
    _check(role, name, platform)
    if not Path(pylon_exe).is_absolute():
        raise ValueError(f"pylon_exe must be an absolute path, not {pylon_exe!r}")
    home = Path(home).absolute()
    argv = [pylon_exe, *daemon_args(role, name, extra_args)]
    _no_newlines([*argv, str(home)])
    if platform == "macos":
        text = _render_launchd(role, name, argv, home)
    else:
        text = _render_systemd(role, name, argv, home)
    return unit_filename(role, name, platform), text


# --- managing --------------------------------------------------------------------------------


def _run(runner: Runner, argv: list[str], *, check: bool) -> subprocess.CompletedProcess[str]:
    try:
        done = runner(argv, capture_output=True, text=True, check=False)
    except FileNotFoundError as exc:
        tool = argv[0]
        hint = "is systemd running for your user?" if tool == "systemctl" else "is this macOS?"
        raise ServiceError(f"{tool} not found ({hint})") from exc
    if check and done.returncode != 0:
        why = (done.stderr or done.stdout or "").strip() or f"exit code {done.returncode}"
        raise ServiceError(f"`{' '.join(argv)}` failed: {why}")
    return done


def _gui_domain() -> str:
    return f"gui/{os.getuid()}"


def install(
    role: str,
    name: str | None = None,
    *,
    platform: str | None = None,
    runner: Runner = subprocess.run,
    pylon_exe: str | None = None,
    home: Path | None = None,
    extra_args: Sequence[str] = (),
    user_home: Path | None = None,
) -> str:
    """Write the service file, load and start it. Returns the file's path.

    Installing again replaces the file and restarts the service with it.
    """
    platform = platform or current_platform()
    home = (home or pylon_home()).absolute()
    filename, text = render_unit(
        role,
        platform=platform,
        name=name,
        pylon_exe=pylon_exe or find_pylon_exe(),
        home=home,
        extra_args=extra_args,
    )
    path = unit_dir(platform, user_home) / filename
    path.parent.mkdir(parents=True, exist_ok=True)
    (home / "logs").mkdir(parents=True, exist_ok=True, mode=0o700)
    # launchd ignores agents that others may write; 0644 is what it expects
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.chmod(0o644)
    tmp.replace(path)
    if platform == "macos":
        target = f"{_gui_domain()}/{label(role, name)}"
        _run(runner, ["launchctl", "bootout", target], check=False)  # not loaded is fine
        _run(runner, ["launchctl", "enable", target], check=True)
        _run(runner, ["launchctl", "bootstrap", _gui_domain(), str(path)], check=True)
    else:
        _run(runner, ["systemctl", "--user", "daemon-reload"], check=True)
        _run(runner, ["systemctl", "--user", "enable", "--now", unit_name(role, name)], check=True)
    return str(path)


def uninstall(
    role: str,
    name: str | None = None,
    *,
    platform: str | None = None,
    runner: Runner = subprocess.run,
    user_home: Path | None = None,
) -> str:
    """Stop and unload the service and remove its file (fine when it is not installed).

    Returns the path the file had.
    """
    platform = platform or current_platform()
    path = unit_path(role, name, platform=platform, user_home=user_home)
    if platform == "macos":
        _run(runner, ["launchctl", "bootout", f"{_gui_domain()}/{label(role, name)}"], check=False)
        path.unlink(missing_ok=True)
    else:
        _run(runner, ["systemctl", "--user", "disable", "--now", unit_name(role, name)], check=False)
        path.unlink(missing_ok=True)
        _run(runner, ["systemctl", "--user", "daemon-reload"], check=True)
    return str(path)


def _parse_launchctl_print(out: str) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for line in out.splitlines():
        key, sep, value = line.strip().partition(" = ")
        if not sep or key in found:  # the first (outermost) occurrence describes the service
            continue
        if key in ("state", "pid", "last exit code"):
            found[key] = value.strip()
    return found


def status(
    role: str,
    name: str | None = None,
    *,
    platform: str | None = None,
    runner: Runner = subprocess.run,
    user_home: Path | None = None,
) -> dict[str, Any]:
    """{"role", "name", "platform", "unit", "path", "installed", "loaded", "running", "pid",
    "state", "detail"} as the service manager reports it."""
    platform = platform or current_platform()
    path = unit_path(role, name, platform=platform, user_home=user_home)
    report: dict[str, Any] = {
        "role": role,
        "name": name,
        "platform": platform,
        "unit": label(role, name) if platform == "macos" else unit_name(role, name),
        "path": str(path),
        "installed": path.exists(),
        "loaded": False,
        "running": False,
        "pid": None,
        "state": "not-loaded",
        "detail": "",
    }
    try:
        if platform == "macos":
            done = _run(runner, ["launchctl", "print", f"{_gui_domain()}/{label(role, name)}"], check=False)
            if done.returncode == 0:
                info = _parse_launchctl_print(done.stdout)
                pid = info.get("pid", "")
                report.update(
                    loaded=True,
                    state=info.get("state", "unknown"),
                    running=info.get("state") == "running",
                    pid=int(pid) if pid.isdigit() else None,
                    detail=f"last exit code {info['last exit code']}" if "last exit code" in info else "",
                )
        else:
            props = "LoadState,ActiveState,SubState,MainPID,UnitFileState,Result"
            done = _run(
                runner,
                ["systemctl", "--user", "show", unit_name(role, name), f"--property={props}"],
                check=True,
            )
            info = dict(line.partition("=")[::2] for line in done.stdout.splitlines() if "=" in line)
            pid = info.get("MainPID", "0")
            enabled, result = info.get("UnitFileState") or "unknown", info.get("Result") or "unknown"
            report.update(
                loaded=info.get("LoadState") == "loaded",
                state=f"{info.get('ActiveState', 'unknown')}/{info.get('SubState', 'unknown')}",
                running=info.get("ActiveState") == "active" and info.get("SubState") == "running",
                pid=int(pid) if pid.isdigit() and pid != "0" else None,
                detail=f"enabled: {enabled}, result: {result}",
            )
    except ServiceError as exc:
        report["detail"] = str(exc)
    return report
