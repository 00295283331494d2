"""Small pieces of issue 12: id prefixes, and words the CLI and TUI print."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pylon.ids import IdError, is_full_id, normalize, resolve_prefix

A = "ab12" + "0" * 60
B = "ab13" + "1" * 60
C = "cd00" + "2" * 60


def test_a_unique_prefix_resolves() -> None:
    assert resolve_prefix("ab120", [A, B, C]) == A
    assert resolve_prefix("AB12…", [A, B, C]) == A  # as a list shows it, pasted
    assert resolve_prefix(C, [A, B, C]) == C
    assert is_full_id(A) and not is_full_id("ab12") and normalize(" Ab12… ") == "ab12"


@pytest.mark.parametrize(
    ("typed", "code", "words"),
    [
        ("ab1", "bad_input", "too short"),
        ("ab1x", "bad_input", "not a job id"),
        ("ffff", "not_found", "no job id starts with ffff"),
        ("", "bad_input", "no job id"),
    ],
)
def test_bad_prefixes_say_why(typed: str, code: str, words: str) -> None:
    with pytest.raises(IdError) as err:
        resolve_prefix(typed, [A, B, C])
    assert err.value.code == code and words in str(err.value)


def test_an_ambiguous_prefix_lists_what_it_matches() -> None:
    with pytest.raises(IdError) as err:
        resolve_prefix("ab1", [A, B, C], "run")
    assert err.value.code == "bad_input"  # 3 characters: too short before anything else
    extra = "ab12" + "f" * 60
    with pytest.raises(IdError) as amb:
        resolve_prefix("ab12", [A, extra], "run")
    assert amb.value.code == "ambiguous" and "2 runs start with it" in str(amb.value)
    assert "ab120000…" in str(amb.value) and "ab12ffff…" in str(amb.value)


def test_nutshell_advice_about_its_own_cli_is_rewritten(capsys: pytest.CaptureFixture[str]) -> None:
    from pylon.payments._nutshell import _print_to_stderr

    _print_to_stderr('Generated a new mnemonic. To view it, run "cashu info --mnemonic".')
    _print_to_stderr("something else")
    err = capsys.readouterr().err
    assert "cashu info" not in err and "wallet seed" in err and "something else" in err


def test_tui_logs_a_node_coming_online_once() -> None:
    from pylon.tui.model import BuyerModel

    m = BuyerModel()
    m._log_node_change(None, {"name": "n0", "pubkey": "a" * 64, "online": True, "state": "online"})
    m._log_node_change(None, {"name": "n1", "pubkey": "b" * 64, "online": True, "state": "paused"})
    text = "\n".join(m.log.take())
    assert "online (online)" not in text and "n0[/] online" in text and "online (paused)" in text


def test_default_relay_follows_this_homes_pylon_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pylon.daemon.config import DEFAULT_RELAY, default_relays

    monkeypatch.setenv("PYLON_HOME", str(tmp_path))
    monkeypatch.delenv("PYLON_RELAYS", raising=False)
    assert default_relays() == [DEFAULT_RELAY]
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "stack.json").write_text(json.dumps({"relay": "ws://127.0.0.1:40001"}))
    assert default_relays() == ["ws://127.0.0.1:40001"]
    monkeypatch.setenv("PYLON_RELAYS", "ws://example.invalid:1")
    assert default_relays() == ["ws://example.invalid:1"]


def test_node_dirs_are_private_all_the_way(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pylon.home import node_dir

    monkeypatch.setenv("PYLON_HOME", str(tmp_path / "h"))
    d = node_dir("n0")
    assert d.stat().st_mode & 0o777 == 0o700 and d.parent.stat().st_mode & 0o777 == 0o700
