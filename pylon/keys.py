"""A daemon's stable Nostr identity: created once, 0600, reused on every start.

Signing goes through coincurve (libsecp256k1) directly: it is several times cheaper per event
than crossing into nostr-sdk for every signature, and a node signs two events per job.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from coincurve import PrivateKey, PublicKeyXOnly
from coincurve._libsecp256k1 import ffi, lib
from coincurve.context import GLOBAL_CONTEXT

from pylon.home import write_private


class KeyFileError(Exception):
    pass


class NostrKeys:
    """A secp256k1 key pair in Nostr's shape: x-only public key, BIP-340 signatures."""

    __slots__ = ("_keypair", "_secret", "pubkey", "xonly")

    def __init__(self, secret: bytes) -> None:
        if len(secret) != 32:
            raise ValueError("a nostr secret key is 32 bytes")
        self._secret = PrivateKey(secret)
        self.xonly = PublicKeyXOnly.from_secret(secret)
        self.pubkey: str = self.xonly.format().hex()
        # coincurve's sign_schnorr rebuilds the keypair and re-derives the public key on every
        # call (three EC multiplications); the keypair is made once here instead.
        self._keypair = ffi.new("secp256k1_keypair *")
        if not lib.secp256k1_keypair_create(GLOBAL_CONTEXT.ctx, self._keypair, secret):
            raise ValueError("invalid secret key")

    @classmethod
    def generate(cls) -> NostrKeys:
        return cls(secrets.token_bytes(32))

    @classmethod
    def from_hex(cls, secret_hex: str) -> NostrKeys:
        return cls(bytes.fromhex(secret_hex))

    def sign(self, digest: bytes) -> str:
        """BIP-340 signature over a 32-byte digest, with fresh auxiliary randomness."""
        sig = ffi.new("unsigned char[64]")
        if not lib.secp256k1_schnorrsig_sign32(
            GLOBAL_CONTEXT.ctx, sig, digest, self._keypair, os.urandom(32)
        ):
            raise ValueError("signing failed")
        return bytes(ffi.buffer(sig)).hex()

    def secret_hex(self) -> str:
        """Only for writing the key file; never log it."""
        return self._secret.secret.hex()

    def __repr__(self) -> str:  # keep the secret out of logs and tracebacks
        return f"NostrKeys(pubkey={self.pubkey[:12]}…)"


def load_or_create_keys(path: Path) -> NostrKeys:
    """Load the secret key at `path`, or generate one there (0600)."""
    if path.exists():
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            raise KeyFileError(f"{path} is readable by others (mode {mode:o}); run: chmod 600 {path}")
        raw = path.read_text().strip()
        try:
            return NostrKeys.from_hex(raw)
        except ValueError as exc:
            raise KeyFileError(f"{path} does not hold a valid nostr secret key (64 hex chars)") from exc
    keys = NostrKeys.generate()
    write_private(path, (keys.secret_hex() + "\n").encode())
    return keys


def key_file_ok(path: Path) -> tuple[bool, str]:
    """For `pylon doctor`: readable, 0600, and a valid key."""
    if not path.exists():
        return False, f"{path} missing (it is created on the daemon's first start)"
    mode = path.stat().st_mode & 0o777
    if mode != 0o600:
        return False, f"{path} has mode {mode:o}; run: chmod 600 {path}"
    if not os.access(path, os.R_OK):
        return False, f"{path} is not readable"
    try:
        pub = load_or_create_keys(path).pubkey
    except KeyFileError as exc:
        return False, str(exc)
    return True, f"{path} ok (pubkey {pub[:12]}…)"
