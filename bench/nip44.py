"""NIP-44 v2: our implementation (pylon.nostr.nip44) against nostr-sdk's bindings, per call.

Why this exists: a node decrypts a request and encrypts a result for every private job, so the
per-call cost decides which implementation Pylon uses. Prints µs per encrypt / decrypt for a
small input (1 KiB, a typical source file's tags) and a chunk-sized one (28 KiB), with the
conversation key cached (ours; nostr-sdk derives it on every call, its API has no cache) and
uncached (an ECDH per call, both).

    .venv/bin/python bench/nip44.py [--n 300]
"""

from __future__ import annotations

import argparse
import json
import time

import nostr_sdk as sdk

from pylon.keys import NostrKeys
from pylon.nostr import nip44


def _per_call_us(fn, n: int) -> float:
    fn()  # warm
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n * 1e6


def _measure(text: str, a: NostrKeys, b: NostrKeys, n: int) -> dict[str, float]:
    sec_a = bytes.fromhex(a.secret_hex())
    conv = nip44.conversation_key(sec_a, b.pubkey)
    sk_a, pk_b = sdk.SecretKey.parse(a.secret_hex()), sdk.PublicKey.parse(b.pubkey)
    sk_b, pk_a = sdk.SecretKey.parse(b.secret_hex()), sdk.PublicKey.parse(a.pubkey)
    ours_ct = nip44.encrypt(text, conv)
    sdk_ct = sdk.nip44_encrypt(sk_a, pk_b, text, sdk.Nip44Version.V2)
    return {
        "ours_encrypt_us": _per_call_us(lambda: nip44.encrypt(text, conv), n),
        "ours_decrypt_us": _per_call_us(lambda: nip44.decrypt(ours_ct, conv), n),
        "ours_encrypt_with_ecdh_us": _per_call_us(
            lambda: nip44.encrypt(text, nip44.conversation_key(sec_a, b.pubkey)), n
        ),
        "sdk_encrypt_us": _per_call_us(lambda: sdk.nip44_encrypt(sk_a, pk_b, text, sdk.Nip44Version.V2), n),
        "sdk_decrypt_us": _per_call_us(lambda: sdk.nip44_decrypt(sk_b, pk_a, sdk_ct), n),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=300)
    args = ap.parse_args()
    a, b = NostrKeys.generate(), NostrKeys.generate()
    out: dict[str, dict[str, float]] = {}
    for label, size in (("1KiB", 1024), ("28KiB", 28 * 1024)):
        out[label] = _measure("x = 1  # source\n" * (size // 16), a, b, args.n)
    print(json.dumps({k: {m: round(v, 1) for m, v in d.items()} for k, d in out.items()}, indent=2))


if __name__ == "__main__":
    main()
