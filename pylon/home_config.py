"""PYLON_HOME/config.toml: the relays and mint a home uses, so no command has to repeat them.

    # flags (--relay, --mint) and the environment (PYLON_RELAYS, PYLON_MINT) override this file
    relays = ["wss://relay.example.org", "ws://127.0.0.1:7777"]
    mint = "http://127.0.0.1:3338"

    # optional: limits a relay enforces but does not publish in NIP-11
    [relay."wss://relay.example.org"]
    max_content_length = 4096

`pylon up` (LocalMarket) writes it for the stack it starts. Read with tomllib, bounded in size;
a file that does not parse is a one-line error naming the file, never a traceback.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click
import msgspec
import platformdirs

from pylon.home import pylon_home
from pylon.nostr.nip11 import Limits

CONFIG_NAME = "config.toml"
MAX_CONFIG_BYTES = 256 * 1024


class ConfigError(click.ClickException):
    pass


class HomeConfig(msgspec.Struct):
    relays: list[str] = []
    mint: str | None = None
    relay: dict[str, Limits] = {}


def config_path(home: Path | None = None) -> Path:
    # Not pylon_home() for reading: it creates the directory (`pylon doctor` checks that one).
    if home is None:
        raw = os.environ.get("PYLON_HOME")
        home = Path(raw).expanduser() if raw else Path(platformdirs.user_data_dir("pylon"))
    return home / CONFIG_NAME


def load(home: Path | None = None) -> HomeConfig:
    path = config_path(home)
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        return HomeConfig()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path} is over {MAX_CONFIG_BYTES} bytes")
    try:
        doc = tomllib.loads(raw.decode())
        return msgspec.convert(doc, HomeConfig)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, msgspec.ValidationError) as exc:
        raise ConfigError(f"{path}: {exc}") from exc


def relays(home: Path | None = None) -> list[str]:
    """$PYLON_RELAYS, else the config file's relays (empty when neither says)."""
    env = [u for u in os.environ.get("PYLON_RELAYS", "").split(",") if u]
    return env or load(home).relays


def mint(home: Path | None = None) -> str | None:
    return os.environ.get("PYLON_MINT") or os.environ.get("PYLON_MINT_URL") or load(home).mint


def relay_limits(home: Path | None = None) -> dict[str, Limits]:
    try:
        return load(home).relay
    except ConfigError:
        return {}  # a daemon already started past the config; its CLI reported the error


def write(
    relay_urls: list[str],
    mint_url: str | None,
    home: Path | None = None,
    limits: Mapping[str, Limits] | None = None,
) -> Path:
    """Write the file, keeping the per-relay limit sections of the old one; `limits` adds or
    replaces sections (a stack declares the limits of the relays it runs itself)."""
    path = config_path(home or pylon_home())
    try:
        old = load(home)
    except ConfigError:
        old = HomeConfig()
    sections = {**old.relay, **(limits or {})}
    lines = [
        "# Pylon configuration for this PYLON_HOME (see README: Configuration).",
        "# Flags (--relay, --mint) and the environment (PYLON_RELAYS, PYLON_MINT) override it.",
        f"relays = [{', '.join(json.dumps(u) for u in relay_urls)}]",
    ]
    if mint_url:
        lines.append(f"mint = {json.dumps(mint_url)}")
    for url, lim in sections.items():
        fields: dict[str, Any] = msgspec.to_builtins(lim)
        if fields:
            lines += ["", f"[relay.{json.dumps(url)}]"]
            lines += [f"{k} = {json.dumps(v)}" for k, v in fields.items()]
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, path)
    return path
