"""A stack declares the limits of the relays it runs (pylon.relay.embedded.declared_limits).

The embedded relay publishes no NIP-11 document, so a publisher that knew nothing of it waited
for the OK of every request bigger than any the relay had taken: a map's first requests went
out one round trip at a time. The stack's config.toml now says what the relay takes; relays
it does not run get nothing said for them."""

from __future__ import annotations

from pathlib import Path

from pylon.home_config import load, relay_limits, write
from pylon.keys import NostrKeys
from pylon.localmarket.launcher import LocalMarket
from pylon.nostr.budget import DEFAULT
from pylon.nostr.event import sign_event
from pylon.nostr.nip11 import Limits
from pylon.nostr.relay_client import RelayPool
from pylon.relay.embedded import MAX_EVENT_BYTES, declared_limits


def test_write_adds_limits_and_keeps_the_old_sections(tmp_path: Path) -> None:
    write(
        ["wss://a.example", "wss://b.example"],
        None,
        tmp_path,
        {"wss://a.example": Limits(max_content_length=4096)},
    )
    write(
        ["wss://a.example", "wss://b.example"],
        "http://127.0.0.1:3338",
        tmp_path,
        {"wss://b.example": Limits(max_message_length=9000, max_content_length=8000)},
    )
    cfg = load(tmp_path)
    assert cfg.relays == ["wss://a.example", "wss://b.example"] and cfg.mint == "http://127.0.0.1:3338"
    assert cfg.relay["wss://a.example"] == Limits(max_content_length=4096)  # kept from before
    assert cfg.relay["wss://b.example"] == Limits(max_message_length=9000, max_content_length=8000)
    write(["wss://a.example"], None, tmp_path, {"wss://a.example": Limits(max_content_length=2048)})
    assert load(tmp_path).relay["wss://a.example"] == Limits(max_content_length=2048)  # replaced


def test_a_stack_declares_its_own_relays_only(tmp_path: Path) -> None:
    m = LocalMarket(home=tmp_path / "ours", nodes=0, relays=2, also_relays=["wss://third.example"])
    m.write_config()
    limits = relay_limits(m.home)
    assert set(limits) == set(m.relay_urls[:2]) and "wss://third.example" not in limits
    assert all(v == declared_limits() for v in limits.values())
    ext = LocalMarket(home=tmp_path / "ext", nodes=0, external_relays=["ws://127.0.0.1:1"])
    ext.write_config()
    assert relay_limits(ext.home) == {}


def test_declared_limits_keep_the_budget_and_spare_the_wait() -> None:
    url = "ws://127.0.0.1:1"
    assert declared_limits().max_message_length == MAX_EVENT_BYTES
    keys = NostrKeys.generate()
    ev = sign_event(keys, 5001, "x" * 20_000)
    unknown = RelayPool([url])
    declared = RelayPool([url], limits={url: declared_limits()})
    # Nothing known: an event bigger than any the relay took waits for its OK; declared: not.
    assert unknown.uncharted(ev) and not declared.uncharted(ev)
    # Events are fitted exactly as before.
    assert declared.budget() == unknown.budget() == DEFAULT
    too_big = sign_event(keys, 5001, "x" * (DEFAULT.content + 1))
    assert declared.uncharted(too_big)
