"""NIP-44 v2 payload encryption (secp256k1 ECDH + HKDF-SHA256 + ChaCha20 + HMAC-SHA256).

Our own small implementation, checked against the NIP's official test vectors
(tests/test_nip44.py) and against nostr-sdk's implementation. It is used instead of
nostr-sdk's `nip44_encrypt`/`nip44_decrypt` because those cost a crossing into the bindings
per call (bench/nip44.py prints both), and a node decrypts a request and encrypts a result
for every private job. The pieces are libsecp256k1 (coincurve) for the ECDH, `cryptography`
(OpenSSL) for ChaCha20 and hashlib/hmac for the rest.

Every failure to decrypt raises Nip44Error with a short `reason` (callers count it and drop
the event): a payload from a stranger is bad input, never a crash.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
from collections import OrderedDict

from coincurve import PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

VERSION = 2
MIN_PLAINTEXT = 1
MAX_PLAINTEXT = 65535
_SALT = b"nip44-v2"
# Bounds of a well-formed base64 payload and of its decoded bytes (from the NIP).
_MIN_PAYLOAD, _MAX_PAYLOAD = 132, 87472
_MIN_DATA, _MAX_DATA = 99, 65603
_CACHE_SIZE = 4096


class Nip44Error(Exception):
    """A payload that cannot be decrypted (or a key pair that cannot talk); `reason` is short."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def conversation_key(secret: bytes, peer_xonly_hex: str) -> bytes:
    """HKDF-extract(salt="nip44-v2", IKM = x of secret·P), P the even-y lift of the peer key."""
    try:
        point = PublicKey(b"\x02" + bytes.fromhex(peer_xonly_hex))
        shared_x = point.multiply(secret).format(compressed=True)[1:]
    except (ValueError, TypeError) as exc:
        raise Nip44Error("bad_key") from exc
    return hmac.new(_SALT, shared_x, hashlib.sha256).digest()


class ConversationKeys:
    """Conversation keys by peer for one secret key, bounded (an ECDH per new peer only)."""

    def __init__(self, secret: bytes, size: int = _CACHE_SIZE) -> None:
        self._secret = secret
        self._size = size
        self._keys: OrderedDict[str, bytes] = OrderedDict()

    def get(self, peer_xonly_hex: str) -> bytes:
        key = self._keys.get(peer_xonly_hex)
        if key is None:
            key = conversation_key(self._secret, peer_xonly_hex)
            self._keys[peer_xonly_hex] = key
            if len(self._keys) > self._size:
                self._keys.popitem(last=False)
        else:
            self._keys.move_to_end(peer_xonly_hex)
        return key


def message_keys(conv_key: bytes, nonce: bytes) -> tuple[bytes, bytes, bytes]:
    """HKDF-expand(PRK=conversation key, info=nonce, L=76) → (chacha key, chacha nonce, hmac key)."""
    if len(conv_key) != 32 or len(nonce) != 32:
        raise Nip44Error("bad_key")
    okm = b""
    block = b""
    for counter in (1, 2, 3):  # 3 × 32 bytes ≥ 76
        block = hmac.new(conv_key, block + nonce + bytes([counter]), hashlib.sha256).digest()
        okm += block
    return okm[:32], okm[32:44], okm[44:76]


def calc_padded_len(unpadded_len: int) -> int:
    if unpadded_len <= 32:
        return 32
    next_power = 1 << (unpadded_len - 1).bit_length()
    chunk = 32 if next_power <= 256 else next_power // 8
    return chunk * ((unpadded_len - 1) // chunk + 1)


def _pad(plaintext: str) -> bytes:
    raw = plaintext.encode()
    if not MIN_PLAINTEXT <= len(raw) <= MAX_PLAINTEXT:
        raise ValueError(f"NIP-44 plaintext must be 1..{MAX_PLAINTEXT} bytes, not {len(raw)}")
    return len(raw).to_bytes(2, "big") + raw + bytes(calc_padded_len(len(raw)) - len(raw))


def _unpad(padded: bytes) -> str:
    n = int.from_bytes(padded[:2], "big")
    raw = padded[2 : 2 + n]
    if n < MIN_PLAINTEXT or len(raw) != n or len(padded) != 2 + calc_padded_len(n):
        raise Nip44Error("bad_padding")
    try:
        return raw.decode()
    except UnicodeDecodeError as exc:
        raise Nip44Error("not_utf8") from exc


def _chacha20(key: bytes, nonce12: bytes, data: bytes) -> bytes:
    # cryptography's ChaCha20 takes a 16-byte nonce: a 32-bit little-endian block counter (0)
    # followed by the 96-bit nonce of RFC 8439, which is what NIP-44 specifies.
    return Cipher(algorithms.ChaCha20(key, b"\x00" * 4 + nonce12), mode=None).encryptor().update(data)


def encrypt(plaintext: str, conv_key: bytes, nonce: bytes | None = None) -> str:
    """A base64 NIP-44 v2 payload. `nonce` only for test vectors: never reuse one."""
    nonce = os.urandom(32) if nonce is None else nonce
    chacha_key, chacha_nonce, hmac_key = message_keys(conv_key, nonce)
    ciphertext = _chacha20(chacha_key, chacha_nonce, _pad(plaintext))
    mac = hmac.new(hmac_key, nonce + ciphertext, hashlib.sha256).digest()
    return base64.b64encode(bytes([VERSION]) + nonce + ciphertext + mac).decode()


def decrypt(payload: str, conv_key: bytes) -> str:
    if not payload or payload[0] == "#":
        raise Nip44Error("unknown_version")
    if not _MIN_PAYLOAD <= len(payload) <= _MAX_PAYLOAD:
        raise Nip44Error("bad_payload_size")
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise Nip44Error("bad_base64") from exc
    if not _MIN_DATA <= len(data) <= _MAX_DATA:
        raise Nip44Error("bad_payload_size")
    if data[0] != VERSION:
        raise Nip44Error("unknown_version")
    nonce, ciphertext, mac = data[1:33], data[33:-32], data[-32:]
    chacha_key, chacha_nonce, hmac_key = message_keys(conv_key, nonce)
    expected = hmac.new(hmac_key, nonce + ciphertext, hashlib.sha256).digest()
    if not hmac.compare_digest(expected, mac):
        raise Nip44Error("bad_mac")
    return _unpad(_chacha20(chacha_key, chacha_nonce, ciphertext))


def ciphertext_len(plaintext_bytes: int) -> int:
    """Length of the base64 payload for a plaintext of this many bytes (for fitting events)."""
    raw = 1 + 32 + 2 + calc_padded_len(plaintext_bytes) + 32
    return 4 * ((raw + 2) // 3)
