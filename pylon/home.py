"""Where Pylon keeps its state: everything lives under PYLON_HOME (DESIGN §1)."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs


def pylon_home() -> Path:
    """PYLON_HOME, or the platform's user data dir; created 0700 on first use."""
    raw = os.environ.get("PYLON_HOME")
    home = Path(raw).expanduser() if raw else Path(platformdirs.user_data_dir("pylon"))
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    return home


def private_dir(path: Path) -> Path:
    """A directory only its owner may enter (sockets, keys, wallets)."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)
    return path


def run_dir() -> Path:
    return private_dir(pylon_home() / "run")


def node_dir(name: str) -> Path:
    # The parent too: mkdir(parents=True) makes missing parents with the umask's mode (0755).
    return private_dir(private_dir(pylon_home() / "nodes") / name)


def buyer_dir() -> Path:
    return private_dir(pylon_home() / "buyer")


def node_socket(name: str) -> Path:
    return run_dir() / f"node-{name}.sock"


def buyer_socket() -> Path:
    return run_dir() / "buyer.sock"


def relay_dir() -> Path:
    return private_dir(pylon_home() / "relay")


def mint_dir() -> Path:
    return private_dir(pylon_home() / "mint")


def write_private(path: Path, data: bytes) -> None:
    """Write a secret file 0600 from its first byte (never world-readable, not even briefly)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
