"""Service files for launchd (macOS) and systemd --user (Linux).

No service manager runs here (this is a container: no systemd user instance, no launchd),
so install/uninstall/status are run with a fake `runner` that records the launchctl and
systemctl command lines and answers with canned output, under a temporary HOME. What can be
checked for real is checked for real: the plist is parsed with plistlib, and the systemd unit
is verified with `systemd-analyze verify --user` when that tool is installed.
"""

from __future__ import annotations

import os
import plistlib
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
from pylon.daemon import service
from pylon.daemon.service import ServiceError, install, render_unit, status, uninstall

EXE = "/opt/pylon/bin/pylon"


class FakeRunner:
    """Records argv; answers from `answers` (argv prefix -> (rc, stdout, stderr)), else rc 0."""

    def __init__(self, answers: dict[tuple[str, ...], tuple[int, str, str]] | None = None) -> None:
        self.calls: list[list[str]] = []
        self.answers = answers or {}

    def __call__(self, argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        assert kwargs.get("check") is False  # the module reads return codes itself
        self.calls.append(list(argv))
        for prefix, (rc, out, err) in self.answers.items():
            if tuple(argv[: len(prefix)]) == prefix:
                return subprocess.CompletedProcess(argv, rc, out, err)
        return subprocess.CompletedProcess(argv, 0, "", "")


@pytest.fixture
def user_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "user"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.setenv("PYLON_HOME", str(tmp_path / "pylon-home"))
    return home


def _unit_settings(text: str) -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            settings.setdefault(key, []).append(value)
    return settings


# --- rendering -------------------------------------------------------------------------------


def test_systemd_unit_for_a_node(tmp_path: Path) -> None:
    home = tmp_path / "ph"
    filename, text = render_unit(
        "node", platform="linux", name="alice", pylon_exe=EXE, home=home, extra_args=["--executor", "ollama"]
    )
    assert filename == "pylon-node-alice.service"
    s = _unit_settings(text)
    assert s["ExecStart"] == [f"{EXE} node up --name alice --executor ollama"]
    assert s["Environment"] == [f"PYLON_HOME={home}"]
    assert s["Restart"] == ["on-failure"]
    assert int(s["RestartSec"][0]) > 0
    assert s["KillSignal"] == ["SIGTERM"]
    assert int(s["TimeoutStopSec"][0]) >= 30  # time to drain
    assert s["StandardOutput"] == [f"append:{home}/logs/node-alice.log"]
    assert s["StandardError"] == s["StandardOutput"]
    assert s["WantedBy"] == ["default.target"]
    assert "[Service]" in text and "[Install]" in text


def test_systemd_unit_for_the_buyer(tmp_path: Path) -> None:
    filename, text = render_unit("buyer", platform="linux", name=None, pylon_exe=EXE, home=tmp_path)
    assert filename == "pylon-buyer.service"
    assert _unit_settings(text)["ExecStart"] == [f"{EXE} buyer up"]


def test_systemd_quoting_of_odd_paths(tmp_path: Path) -> None:
    exe = str(tmp_path / "my bin" / "pylon")
    home = tmp_path / "home 100%"
    _, text = render_unit("node", platform="linux", name="a", pylon_exe=exe, home=home, extra_args=["$X"])
    s = _unit_settings(text)
    # systemd's word splitting of a quoted ExecStart is the shell's for these characters
    assert shlex.split(s["ExecStart"][0]) == [exe, "node", "up", "--name", "a", "$$X"]
    assert s["Environment"] == [f'"PYLON_HOME={str(home).replace("%", "%%")}"']


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_analyze_accepts_the_unit(tmp_path: Path) -> None:
    exe = tmp_path / "bin dir" / "pylon"
    exe.parent.mkdir()
    exe.write_text("#!/bin/sh\nexit 0\n")
    exe.chmod(0o755)
    home = tmp_path / "pylon home"
    (home / "logs").mkdir(parents=True)
    filename, text = render_unit("node", platform="linux", name="alice", pylon_exe=str(exe), home=home)
    unit = tmp_path / filename
    unit.write_text(text)
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    done = subprocess.run(
        ["systemd-analyze", "verify", "--user", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "XDG_RUNTIME_DIR": str(runtime), "SYSTEMD_LOG_LEVEL": "warning"},
    )
    assert done.returncode == 0, done.stderr
    assert filename not in done.stderr, done.stderr  # no warning about our unit


def test_launchd_plist_for_a_node(tmp_path: Path) -> None:
    home = tmp_path / "ph"
    filename, text = render_unit("node", platform="macos", name="alice", pylon_exe=EXE, home=home)
    assert filename == "dev.pylon.node-alice.plist"
    plist = plistlib.loads(text.encode())
    assert plist["Label"] == "dev.pylon.node-alice"
    assert plist["ProgramArguments"] == [EXE, "node", "up", "--name", "alice"]
    assert plist["RunAtLoad"] is True
    assert plist["KeepAlive"] == {"SuccessfulExit": False}  # restart on failure, not after a drain
    assert plist["EnvironmentVariables"]["PYLON_HOME"] == str(home)
    assert plist["EnvironmentVariables"]["PATH"].startswith("/opt/pylon/bin:")
    assert plist["StandardOutPath"] == str(home / "logs" / "node-alice.log")
    assert plist["StandardErrorPath"] == plist["StandardOutPath"]
    assert plist["WorkingDirectory"] == str(home)
    assert plist["ExitTimeOut"] >= 30


def test_launchd_plist_for_the_buyer_and_the_default_node(tmp_path: Path) -> None:
    _, text = render_unit("buyer", platform="macos", name=None, pylon_exe=EXE, home=tmp_path)
    plist = plistlib.loads(text.encode())
    assert (plist["Label"], plist["ProgramArguments"]) == ("dev.pylon.buyer", [EXE, "buyer", "up"])
    _, text = render_unit("node", platform="macos", name=None, pylon_exe=EXE, home=tmp_path)
    assert plistlib.loads(text.encode())["ProgramArguments"] == [EXE, "node", "up"]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"role": "relay", "name": None, "platform": "linux"},
        {"role": "node", "name": "a/b", "platform": "linux"},
        {"role": "node", "name": "-x", "platform": "macos"},
        {"role": "node", "name": "a", "platform": "windows"},
        {"role": "buyer", "name": "a", "platform": "linux"},
    ],
)
def test_bad_arguments_are_refused(tmp_path: Path, kwargs: dict) -> None:
    with pytest.raises(ValueError):
        render_unit(
            kwargs["role"], platform=kwargs["platform"], name=kwargs["name"], pylon_exe=EXE, home=tmp_path
        )


def test_relative_exe_and_newlines_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        render_unit("buyer", platform="linux", name=None, pylon_exe="pylon", home=tmp_path)
    with pytest.raises(ValueError):
        render_unit("buyer", platform="linux", name=None, pylon_exe=EXE, home=tmp_path, extra_args=["a\nb"])


# --- install / uninstall / status ------------------------------------------------------------


def test_linux_install_uninstall(user_home: Path, tmp_path: Path) -> None:
    runner = FakeRunner()
    path = Path(install("node", "alice", platform="linux", runner=runner, pylon_exe=EXE))
    assert path == user_home / ".config/systemd/user/pylon-node-alice.service"
    assert _unit_settings(path.read_text())["Environment"] == [f"PYLON_HOME={tmp_path / 'pylon-home'}"]
    assert (tmp_path / "pylon-home" / "logs").is_dir()
    assert runner.calls == [
        ["systemctl", "--user", "daemon-reload"],
        ["systemctl", "--user", "enable", "--now", "pylon-node-alice.service"],
    ]

    runner.calls.clear()
    assert uninstall("node", "alice", platform="linux", runner=runner) == str(path)
    assert not path.exists()
    assert runner.calls == [
        ["systemctl", "--user", "disable", "--now", "pylon-node-alice.service"],
        ["systemctl", "--user", "daemon-reload"],
    ]


def test_linux_install_honours_xdg_config_home(user_home: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    path = Path(install("buyer", platform="linux", runner=FakeRunner(), pylon_exe=EXE))
    assert path == tmp_path / "xdg/systemd/user/pylon-buyer.service"


def test_macos_install_uninstall(user_home: Path, tmp_path: Path) -> None:
    runner = FakeRunner()
    path = Path(install("node", "bob", platform="macos", runner=runner, pylon_exe=EXE))
    assert path == user_home / "Library/LaunchAgents/dev.pylon.node-bob.plist"
    assert path.stat().st_mode & 0o777 == 0o644
    plist = plistlib.loads(path.read_bytes())
    assert plist["EnvironmentVariables"]["PYLON_HOME"] == str(tmp_path / "pylon-home")
    target = f"gui/{os.getuid()}/dev.pylon.node-bob"
    assert runner.calls == [
        ["launchctl", "bootout", target],
        ["launchctl", "enable", target],
        ["launchctl", "bootstrap", f"gui/{os.getuid()}", str(path)],
    ]

    runner.calls.clear()
    uninstall("node", "bob", platform="macos", runner=runner)
    assert not path.exists()
    assert runner.calls == [["launchctl", "bootout", target]]


def test_uninstall_of_something_not_installed_is_fine(user_home: Path) -> None:
    runner = FakeRunner({("launchctl", "bootout"): (113, "", "Could not find service")})
    uninstall("buyer", platform="macos", runner=runner)
    assert runner.calls == [["launchctl", "bootout", f"gui/{os.getuid()}/dev.pylon.buyer"]]


def test_a_failing_service_manager_is_a_clear_error(user_home: Path) -> None:
    runner = FakeRunner({("systemctl", "--user", "daemon-reload"): (1, "", "Failed to connect to bus")})
    with pytest.raises(ServiceError, match="Failed to connect to bus"):
        install("node", "alice", platform="linux", runner=runner, pylon_exe=EXE)
    assert runner.calls == [["systemctl", "--user", "daemon-reload"]]


def test_a_missing_service_manager_is_a_clear_error(user_home: Path) -> None:
    def runner(argv: list[str], **_: object) -> subprocess.CompletedProcess[str]:
        raise FileNotFoundError(argv[0])

    with pytest.raises(ServiceError, match="systemctl not found"):
        install("buyer", platform="linux", runner=runner, pylon_exe=EXE)


def test_linux_status(user_home: Path) -> None:
    install("node", "alice", platform="linux", runner=FakeRunner(), pylon_exe=EXE)
    show = (
        "LoadState=loaded\nActiveState=active\nSubState=running\nMainPID=4242\n"
        "UnitFileState=enabled\nResult=success\n"
    )
    runner = FakeRunner({("systemctl", "--user", "show"): (0, show, "")})
    report = status("node", "alice", platform="linux", runner=runner)
    assert report["installed"] and report["loaded"] and report["running"]
    assert report["pid"] == 4242
    assert report["state"] == "active/running"
    assert report["unit"] == "pylon-node-alice.service"
    assert runner.calls[0][:4] == ["systemctl", "--user", "show", "pylon-node-alice.service"]


def test_linux_status_not_installed(user_home: Path) -> None:
    show = (
        "LoadState=not-found\nActiveState=inactive\nSubState=dead\nMainPID=0\n"
        "UnitFileState=\nResult=success\n"
    )
    report = status("buyer", platform="linux", runner=FakeRunner({("systemctl",): (0, show, "")}))
    assert not report["installed"] and not report["loaded"] and not report["running"]
    assert report["pid"] is None


def test_macos_status(user_home: Path) -> None:
    printed = (
        f"gui/{os.getuid()}/dev.pylon.buyer = {{\n\tactive count = 1\n\tpath = /x.plist\n\tstate = running\n"
        "\tpid = 777\n\tlast exit code = (never exited)\n\tendpoints = {\n\t\tstate = active\n\t}\n}\n"
    )
    report = status("buyer", platform="macos", runner=FakeRunner({("launchctl", "print"): (0, printed, "")}))
    assert report["loaded"] and report["running"] and report["pid"] == 777
    assert report["detail"] == "last exit code (never exited)"
    not_loaded = FakeRunner({("launchctl", "print"): (113, "", "Could not find service")})
    report = status("buyer", platform="macos", runner=not_loaded)
    assert not report["loaded"] and not report["running"] and report["state"] == "not-loaded"


def test_status_without_a_service_manager(user_home: Path) -> None:
    def runner(argv: list[str], **_: object) -> subprocess.CompletedProcess[str]:
        raise FileNotFoundError(argv[0])

    report = status("buyer", platform="linux", runner=runner)
    assert not report["loaded"] and "systemctl not found" in report["detail"]


def test_find_pylon_exe_is_absolute() -> None:
    try:
        exe = service.find_pylon_exe()
    except ServiceError:
        pytest.skip("no pylon executable in this environment")
    assert Path(exe).is_absolute() and Path(exe).name == "pylon"
