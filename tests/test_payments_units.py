"""Payments pieces that need no mint: msats↔sats, P2PK keys, proof shape and lock parsing, mint argv/env."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from pylon.payments import (
    MintConfig,
    PaymentError,
    covers,
    inspect_proofs,
    mint_command,
    msats_for_sats,
    normalize_p2pk_pubkey,
    p2pk_keys_match,
    sats_for_msats,
)
from pylon.payments.mint import MintStartError, load_or_create_mint_key
from pylon.payments.proofs import parse_lock

# the secp256k1 generator: a known valid x coordinate (its y is even)
GX = "79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798"
KEYSET = "01" + "ab" * 32


def p2pk_secret(data: str, tags: list[list[str]] | None = None, nonce: str = "aa" * 16) -> str:
    body: dict = {"nonce": nonce, "data": data}
    if tags:
        body["tags"] = tags
    return json.dumps(["P2PK", body])


def proof(amount: int, secret: str, *, dleq: bool = True) -> dict:
    p = {"id": KEYSET, "amount": amount, "secret": secret, "C": "02" + GX}
    if dleq:
        p["dleq"] = {"e": "11" * 32, "s": "22" * 32, "r": "33" * 32}
    return p


def test_msats_round_up_to_whole_sats() -> None:
    assert sats_for_msats(0) == 0
    assert sats_for_msats(1) == 1
    assert sats_for_msats(1000) == 1
    assert sats_for_msats(1001) == 2
    assert sats_for_msats(21_000) == 21
    assert msats_for_sats(21) == 21_000
    assert covers(2, 1001) and covers(1, 1000) and not covers(1, 1001)
    with pytest.raises(ValueError):
        sats_for_msats(-1)
    with pytest.raises(TypeError):
        sats_for_msats(1.5)  # type: ignore[arg-type]


def test_p2pk_keys_normalise_to_02_x_form() -> None:
    assert normalize_p2pk_pubkey(GX) == "02" + GX
    assert normalize_p2pk_pubkey("03" + GX.upper()) == "02" + GX
    assert p2pk_keys_match("02" + GX, "03" + GX)
    assert not p2pk_keys_match("02" + GX, "02" + "11" * 32)
    assert not p2pk_keys_match("02" + GX, "junk")
    for bad in ("", "zz" * 32, "04" + GX, GX[:-2], "02" + "ff" * 32):  # last: x beyond the field
        with pytest.raises(ValueError):
            normalize_p2pk_pubkey(bad)


def test_inspect_reads_amount_lock_locktime_refund() -> None:
    tags = [["locktime", "1700000100"], ["refund", "02" + "cd" * 32], ["sigflag", "SIG_INPUTS"]]
    proofs = [
        proof(8, p2pk_secret("02" + GX, tags, nonce="01" * 16)),
        proof(2, p2pk_secret("03" + GX, [["locktime", "1700000050"], *tags[1:]], nonce="02" * 16)),
    ]
    info = inspect_proofs(proofs)
    assert info.amount_sats == 10
    assert info.count == 2
    assert info.keyset_ids == [KEYSET]
    assert info.lock_pubkey == "02" + GX  # same signer in both spellings
    assert info.locktime == 1700000050  # the earliest one governs a refund of the lot
    assert info.refund_pubkeys == ["02" + "cd" * 32]
    assert info.has_dleq


def test_inspect_reports_no_lock_when_locks_differ_or_are_missing() -> None:
    mixed = [proof(1, p2pk_secret("02" + GX, nonce="01" * 16)), proof(1, "ab" * 32)]
    assert inspect_proofs(mixed).lock_pubkey is None
    two_keys = [
        proof(1, p2pk_secret("02" + GX, nonce="01" * 16)),
        proof(1, p2pk_secret("02" + "cd" * 32, nonce="02" * 16)),
    ]
    info = inspect_proofs(two_keys)
    assert info.lock_pubkey is None and info.locktime is None and info.refund_pubkeys == []
    assert not inspect_proofs([proof(4, "ab" * 32, dleq=False)]).has_dleq


@pytest.mark.parametrize(
    "proofs",
    [
        [],
        "not a list",
        [{"id": KEYSET, "amount": 3, "secret": "x", "C": "02" + GX}],  # 3 is no power of two
        [{"id": KEYSET, "amount": True, "secret": "x", "C": "02" + GX}],
        [{"id": "nothex", "amount": 1, "secret": "x", "C": "02" + GX}],
        [{"id": KEYSET, "amount": 1, "secret": "x", "C": "05" + GX}],
        [{"id": KEYSET, "amount": 1, "secret": "", "C": "02" + GX}],
        [{"id": KEYSET, "amount": 1, "secret": "x" * 2000, "C": "02" + GX}],
        [{**proof(1, "x"), "dleq": {"e": "zz"}}],
        [proof(1, "same"), proof(2, "same")],  # one secret twice
        [proof(1, '["P2PK", {"data": 5}]')],  # a NUT-10 secret that is malformed
        [proof(1, p2pk_secret("02" + GX, [["locktime", "soon"]]))],
    ],
)
def test_inspect_refuses_malformed_proofs(proofs: object) -> None:
    with pytest.raises(PaymentError) as exc:
        inspect_proofs(proofs)
    assert exc.value.code == "invalid"


def test_parse_lock_plain_secret_is_unlocked() -> None:
    assert parse_lock("ab" * 32) is None
    lock = parse_lock(p2pk_secret("02" + GX, [["n_sigs", "2"], ["pubkeys", "02" + "cd" * 32]]))
    assert lock is not None and lock.n_sigs == 2 and lock.pubkeys == ("02" + "cd" * 32,)


def test_mint_command_scrubs_env_and_keeps_key_private(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYLON_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TOR", "TRUE")  # would make nutshell route through Tor if passed on
    monkeypatch.setenv("MINT_INPUT_FEE_PPK", "100")
    cfg = MintConfig(port=4242, data_dir=tmp_path / "mint")
    argv, env = mint_command(cfg)
    assert argv[1:3] == ["-m", "pylon.payments._mint_main"]
    assert argv[argv.index("--port") + 1] == "4242"
    assert "TOR" not in env
    assert env["MINT_INPUT_FEE_PPK"] == "0"
    assert env["MINT_BACKEND_BOLT11_SAT"] == "FakeWallet"
    assert env["MINT_DATABASE"] == str((tmp_path / "mint" / "db").resolve())
    assert env["HOME"] == env["PYLON_MINT_DIR"] == str((tmp_path / "mint").resolve())
    key_file = tmp_path / "mint" / "mint.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "mint").stat().st_mode) == 0o700
    # generated once, then reused: the mint's keysets must not change across restarts
    assert mint_command(cfg)[1]["MINT_PRIVATE_KEY"] == env["MINT_PRIVATE_KEY"] == key_file.read_text().strip()
    assert cfg.url == "http://127.0.0.1:4242"


def test_mint_key_readable_by_others_is_refused(tmp_path: Path) -> None:
    load_or_create_mint_key(tmp_path)
    (tmp_path / "mint.key").chmod(0o644)
    with pytest.raises(MintStartError, match="chmod 600"):
        load_or_create_mint_key(tmp_path)
