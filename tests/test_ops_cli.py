"""`pylon service ...` and `pylon doctor` through the real CLI.

No service manager runs in this container, so `systemctl` is a stand-in script put first on
PATH: it records its argv and answers `show` like systemd does. Everything else is real: the
unit file written under $HOME/.config/systemd/user, the plist parsed with plistlib, and for
the doctor a live market (relay, buyer and node processes), their key files and sockets.
"""

from __future__ import annotations

import json
import os
import plistlib
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from ollama_fake import FakeOllama

from pylon.localmarket.launcher import LocalMarket, free_port, pylon_argv

FAKE_SYSTEMCTL = """#!/bin/sh
echo "$@" >> "$SYSTEMCTL_LOG"
case "$*" in
  *" show "*) printf 'LoadState=loaded\\nActiveState=active\\nSubState=running\\n'
              printf 'MainPID=4242\\nUnitFileState=enabled\\nResult=success\\n' ;;
esac
exit 0
"""


def run(args: list[str], env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(pylon_argv(*args), env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "pylon-home"
    home.mkdir(mode=0o700)
    user = tmp_path / "user"
    user.mkdir()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "systemctl"
    fake.write_text(FAKE_SYSTEMCTL)
    fake.chmod(0o755)
    e = {k: v for k, v in os.environ.items() if k not in ("XDG_CONFIG_HOME", "PYLON_RELAYS", "OLLAMA_HOST")}
    e.update(
        PYLON_HOME=str(home),
        HOME=str(user),
        PATH=f"{bin_dir}:{e.get('PATH', '')}",
        SYSTEMCTL_LOG=str(tmp_path / "systemctl.log"),
        PYLON_LOG_LEVEL="warning",
    )
    return e


# --- service --------------------------------------------------------------------------------------


def test_print_systemd_unit_without_installing(env: dict[str, str]) -> None:
    out = run(
        [
            "service",
            "install",
            "node",
            "--name",
            "alice",
            "--print",
            "--platform",
            "linux",
            "--",
            "--relay",
            "wss://relay.example",
            "--executor",
            "ollama",
        ],
        env,
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    exec_start = next(line for line in lines if line.startswith("ExecStart="))
    exe, *args = exec_start.removeprefix("ExecStart=").split()
    assert Path(exe).is_absolute() and Path(exe).name == "pylon"
    assert args == ["node", "up", "--name", "alice", "--relay", "wss://relay.example", "--executor", "ollama"]
    assert f"Environment=PYLON_HOME={env['PYLON_HOME']}" in lines
    assert not Path(env["HOME"], ".config").exists()  # nothing written
    assert not Path(env["SYSTEMCTL_LOG"]).exists()  # nothing run


def test_print_launchd_plist_as_json(env: dict[str, str]) -> None:
    out = run(["service", "install", "buyer", "--print", "--platform", "macos", "--json"], env)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["filename"] == "dev.pylon.buyer.plist" and doc["platform"] == "macos"
    plist = plistlib.loads(doc["text"].encode())
    assert plist["Label"] == "dev.pylon.buyer"
    assert plist["ProgramArguments"][1:] == ["buyer", "up"]
    assert plist["EnvironmentVariables"]["PYLON_HOME"] == env["PYLON_HOME"]
    assert doc["path"].endswith("Library/LaunchAgents/dev.pylon.buyer.plist")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="installs a systemd --user unit")
def test_install_status_uninstall_with_systemctl(env: dict[str, str]) -> None:
    unit = Path(env["HOME"]) / ".config" / "systemd" / "user" / "pylon-node-alice.service"
    out = run(["service", "install", "node", "--name", "alice", "--json"], env)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["path"] == str(unit) and doc["installed"] is True
    assert "ExecStart=" in unit.read_text() and "--name alice" in unit.read_text()
    assert doc["log"] == str(Path(env["PYLON_HOME"]) / "logs" / "node-alice.log")

    st = run(["service", "status", "node", "--name", "alice", "--json"], env)
    assert st.returncode == 0, st.stderr
    status = json.loads(st.stdout)
    assert status["installed"] and status["running"] and status["pid"] == 4242
    assert status["unit"] == "pylon-node-alice.service"

    out = run(["service", "uninstall", "node", "--name", "alice", "--json"], env)
    assert out.returncode == 0 and json.loads(out.stdout)["installed"] is False
    assert not unit.exists()
    calls = Path(env["SYSTEMCTL_LOG"]).read_text().splitlines()
    assert calls == [
        "--user daemon-reload",
        "--user enable --now pylon-node-alice.service",
        "--user show pylon-node-alice.service "
        "--property=LoadState,ActiveState,SubState,MainPID,UnitFileState,Result",
        "--user disable --now pylon-node-alice.service",
        "--user daemon-reload",
    ]


def test_service_usage_errors(env: dict[str, str]) -> None:
    out = run(["service", "install", "buyer", "--name", "x", "--print"], env)
    assert out.returncode != 0 and "the buyer takes no --name" in out.stderr
    other = "macos" if sys.platform.startswith("linux") else "linux"
    out = run(["service", "install", "node", "--platform", other], env)
    assert out.returncode != 0 and "use --print" in out.stderr
    out = run(["service", "install", "node", "--name", "bad name!", "--print"], env)
    assert out.returncode != 0 and "bad node name" in out.stderr
    out = run(["service", "status", "toaster"], env)
    assert out.returncode != 0


# --- doctor ---------------------------------------------------------------------------------------


def doctor(env: dict[str, str], *args: str) -> tuple[int, list[dict]]:
    out = run(["doctor", "--json", "--timeout", "3", *args], env)
    return out.returncode, json.loads(out.stdout)


@pytest.mark.integration
def test_doctor_on_a_live_market(env: dict[str, str]) -> None:
    m = LocalMarket(home=Path(env["PYLON_HOME"]), nodes=1, memory_relay=True)
    try:
        m.start(timeout=60)
        rc, checks = doctor(env, "--relay", m.relay_url, "--no-ollama")
        by = {c["name"]: c for c in checks}
        assert rc == 0, [c for c in checks if not c["ok"]]
        # The keys the daemons made are where the doctor looks, and the sockets answer.
        assert by["key buyer/nostr.key"]["ok"] and by["key nodes/n0/nostr.key"]["ok"]
        assert by["socket buyer.sock"]["detail"].startswith("buyer ")
        assert by["socket node-n0.sock"]["detail"].startswith("node n0 answers")
        assert by[f"relay {m.relay_url}"]["ok"] and by["home"]["ok"]
        assert set(checks[0]) == {"name", "ok", "detail", "fix"}

        # A key others can read, a node killed under its socket, and a wrong relay.
        (Path(env["PYLON_HOME"]) / "nodes" / "n0" / "nostr.key").chmod(0o644)
        m.kill("node-n0", signal.SIGKILL)
        dead = f"ws://127.0.0.1:{free_port()}"
        rc, checks = doctor(env, "--relay", dead, "--no-ollama")
        by = {c["name"]: c for c in checks}
        assert rc == 1
        failed = {c["name"] for c in checks if not c["ok"]}
        assert failed == {"key nodes/n0/nostr.key", "socket node-n0.sock", f"relay {dead}"}
        assert by["key nodes/n0/nostr.key"]["fix"].startswith("chmod 600 ")
        assert "rm " in by["socket node-n0.sock"]["fix"] and "pylon relay up" in by[f"relay {dead}"]["fix"]

        text = run(["doctor", "--relay", dead, "--no-ollama"], env)
        assert text.returncode == 1
        assert text.stdout.count("FAIL") == 3 and "fix: chmod 600" in text.stdout
        assert "3 check(s) failed" in text.stderr
    finally:
        m.stop()


def test_doctor_checks_ollama_and_its_model(env: dict[str, str]) -> None:
    dead = f"ws://127.0.0.1:{free_port()}"
    with FakeOllama(models=["qwen2.5-coder:1.5b"]) as ollama:
        rc, checks = doctor(
            env, "--relay", dead, "--ollama-host", ollama.url, "--model", "qwen2.5-coder:1.5b"
        )
        by = {c["name"]: c for c in checks}
        assert by[f"ollama {ollama.url}"]["ok"] and by["model qwen2.5-coder:1.5b"]["ok"]
        rc, checks = doctor(env, "--relay", dead, "--ollama-host", ollama.url, "--model", "llama3:70b")
        by = {c["name"]: c for c in checks}
        assert rc == 1 and by["model llama3:70b"]["fix"] == "ollama pull llama3:70b"
    gone = f"http://127.0.0.1:{free_port()}"
    rc, checks = doctor(env, "--relay", dead, "--ollama-host", gone)
    by = {c["name"]: c for c in checks}
    assert rc == 1 and not by[f"ollama {gone}"]["ok"] and "ollama serve" in by[f"ollama {gone}"]["fix"]


def test_doctor_on_a_fresh_machine(env: dict[str, str], tmp_path: Path) -> None:
    """No home yet: the doctor says so and does not create it."""
    fresh = tmp_path / "nowhere"
    env = env | {"PYLON_HOME": str(fresh)}
    rc, checks = doctor(env, "--relay", f"ws://127.0.0.1:{free_port()}", "--no-ollama")
    by = {c["name"]: c for c in checks}
    assert rc == 1 and not by["home"]["ok"] and "mkdir" in by["home"]["fix"]
    assert not fresh.exists()
