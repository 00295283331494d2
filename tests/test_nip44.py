"""NIP-44 v2: the official test vectors, round trips, nostr-sdk interop, and clean failures."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from pathlib import Path

import pytest
from coincurve import PublicKeyXOnly

from pylon.keys import NostrKeys
from pylon.nostr import nip44

V = json.loads((Path(__file__).parent / "fixtures" / "nip44.vectors.json").read_text())["v2"]


def _pub(sec_hex: str) -> str:
    return PublicKeyXOnly.from_secret(bytes.fromhex(sec_hex)).format().hex()


@pytest.mark.parametrize("c", V["valid"]["get_conversation_key"])
def test_conversation_key_vectors(c):
    assert nip44.conversation_key(bytes.fromhex(c["sec1"]), c["pub2"]).hex() == c["conversation_key"]


@pytest.mark.parametrize("c", V["valid"]["get_message_keys"]["keys"])
def test_message_key_vectors(c):
    conv = bytes.fromhex(V["valid"]["get_message_keys"]["conversation_key"])
    ck, cn, hk = nip44.message_keys(conv, bytes.fromhex(c["nonce"]))
    assert (ck.hex(), cn.hex(), hk.hex()) == (c["chacha_key"], c["chacha_nonce"], c["hmac_key"])


@pytest.mark.parametrize(("n", "padded"), V["valid"]["calc_padded_len"])
def test_padding_vectors(n, padded):
    assert nip44.calc_padded_len(n) == padded


@pytest.mark.parametrize("c", V["valid"]["encrypt_decrypt"])
def test_encrypt_decrypt_vectors(c):
    conv = nip44.conversation_key(bytes.fromhex(c["sec1"]), _pub(c["sec2"]))
    assert conv.hex() == c["conversation_key"]
    # Both directions agree on the key.
    assert nip44.conversation_key(bytes.fromhex(c["sec2"]), _pub(c["sec1"])) == conv
    assert nip44.encrypt(c["plaintext"], conv, bytes.fromhex(c["nonce"])) == c["payload"]
    assert nip44.decrypt(c["payload"], conv) == c["plaintext"]


@pytest.mark.parametrize("c", V["valid"]["encrypt_decrypt_long_msg"])
def test_long_message_vectors(c):
    plaintext = c["pattern"] * c["repeat"]
    assert hashlib.sha256(plaintext.encode()).hexdigest() == c["plaintext_sha256"]
    conv = bytes.fromhex(c["conversation_key"])
    payload = nip44.encrypt(plaintext, conv, bytes.fromhex(c["nonce"]))
    assert hashlib.sha256(payload.encode()).hexdigest() == c["payload_sha256"]
    assert nip44.decrypt(payload, conv) == plaintext


@pytest.mark.parametrize("c", V["invalid"]["get_conversation_key"])
def test_invalid_conversation_keys(c):
    with pytest.raises(nip44.Nip44Error):
        nip44.conversation_key(bytes.fromhex(c["sec1"]), c["pub2"])


@pytest.mark.parametrize("c", V["invalid"]["decrypt"])
def test_invalid_payloads_fail_cleanly(c):
    with pytest.raises(nip44.Nip44Error):
        nip44.decrypt(c["payload"], bytes.fromhex(c["conversation_key"]))


@pytest.mark.parametrize("n", V["invalid"]["encrypt_msg_lengths"])
def test_invalid_plaintext_lengths(n):
    with pytest.raises(ValueError):
        nip44.encrypt("x" * n, secrets.token_bytes(32))


def _pair() -> tuple[NostrKeys, NostrKeys]:
    return NostrKeys.generate(), NostrKeys.generate()


def _conv(a: NostrKeys, b: NostrKeys) -> bytes:
    return nip44.conversation_key(bytes.fromhex(a.secret_hex()), b.pubkey)


@pytest.mark.parametrize("text", ["x", "def f():\n    return 1\n", "é" * 30000, "a" * 65535])
def test_round_trip_between_two_keys(text):
    a, b = _pair()
    payload = nip44.encrypt(text, _conv(a, b))
    assert len(payload) == nip44.ciphertext_len(len(text.encode()))
    assert nip44.decrypt(payload, _conv(b, a)) == text


def test_same_plaintext_encrypts_differently_each_time():
    a, b = _pair()
    conv = _conv(a, b)
    assert nip44.encrypt("same", conv) != nip44.encrypt("same", conv)


def test_wrong_key_fails_cleanly():
    a, b = _pair()
    stranger = NostrKeys.generate()
    payload = nip44.encrypt("secret source", _conv(a, b))
    with pytest.raises(nip44.Nip44Error) as err:
        nip44.decrypt(payload, _conv(stranger, a))
    assert err.value.reason == "bad_mac"


def test_tampered_payload_fails_cleanly():
    a, b = _pair()
    raw = bytearray(base64.b64decode(nip44.encrypt("secret source" * 10, _conv(a, b))))
    for pos in (1, 40, len(raw) - 40, len(raw) - 1):  # nonce, ciphertext, ciphertext, mac
        bad = bytearray(raw)
        bad[pos] ^= 0x01
        with pytest.raises(nip44.Nip44Error):
            nip44.decrypt(base64.b64encode(bytes(bad)).decode(), _conv(b, a))
    for junk in ("", "#", "A" * 200, "not base64 !!" * 20, "Ag" + "=" * 200):
        with pytest.raises(nip44.Nip44Error):
            nip44.decrypt(junk, _conv(b, a))


def test_conversation_key_cache_is_bounded_and_consistent():
    a = NostrKeys.generate()
    cache = nip44.ConversationKeys(bytes.fromhex(a.secret_hex()), size=4)
    peers = [NostrKeys.generate() for _ in range(6)]
    for p in peers:
        assert cache.get(p.pubkey) == _conv(a, p)
    assert len(cache._keys) == 4
    assert cache.get(peers[0].pubkey) == _conv(a, peers[0])


def test_interop_with_nostr_sdk():
    """Our payloads decrypt with nostr-sdk (rust-nostr) and theirs with ours."""
    import nostr_sdk as sdk

    a, b = _pair()
    text = 'fn main() { println!("interop"); }\n' * 40
    sk_a = sdk.SecretKey.parse(a.secret_hex())
    sk_b = sdk.SecretKey.parse(b.secret_hex())
    ours = nip44.encrypt(text, _conv(a, b))
    assert sdk.nip44_decrypt(sk_b, sdk.PublicKey.parse(a.pubkey), ours) == text
    theirs = sdk.nip44_encrypt(sk_a, sdk.PublicKey.parse(b.pubkey), text, sdk.Nip44Version.V2)
    assert nip44.decrypt(theirs, _conv(b, a)) == text
