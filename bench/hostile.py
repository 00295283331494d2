"""Peak RSS and event-loop stall of a node's code path under the two hostile inputs of issue 10.

- bomb:  8 chunk events (~1.3 KB request) that inflate to 238 MiB, fed to `nip90.reassemble`
         (the node calls it on its event loop).
- parse: a file of `(` (256 KiB by default: ~1 KB once compressed) run through the node's
         deterministic executor with a 5 s per-file limit, a 10 ms heartbeat on the loop.

`before` loads the code of a git revision (default: the merge base with main) next to `after`,
the working tree. Each (attack, variant) runs in a fresh process so peak RSS is its own.

    .venv/bin/python bench/hostile.py [--size-kib 256] [--rev REV] [--only bomb|parse]
"""

from __future__ import annotations

import argparse
import base64
import importlib.util
import json
import resource
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import anyio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _load_old(rev: str, rel: str, name: str):
    src = subprocess.run(["git", "show", f"{rev}:{rel}"], cwd=ROOT, capture_output=True, check=True).stdout
    path = Path(tempfile.mkdtemp()) / f"{name}.py"
    path.write_bytes(src)
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _rss_mib() -> tuple[float, float]:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return own, kids


class _Heartbeat:
    def __init__(self) -> None:
        self.max_gap = 0.0

    async def run(self) -> None:
        last = time.monotonic()
        while True:
            await anyio.sleep(0.01)
            now = time.monotonic()
            self.max_gap = max(self.max_gap, now - last - 0.01)
            last = now


def bomb(variant: str, rev: str) -> dict:
    import msgspec
    from pylon.schemas import kinds
    from pylon.schemas.events import InputChunk

    from pylon.keys import NostrKeys
    from pylon.nostr import nip90
    from pylon.nostr.event import sign_event

    mod = _load_old(rev, "pylon/nostr/nip90.py", "old_nip90") if variant == "before" else nip90
    keys = NostrKeys.generate()
    z, zeros = zlib.compressobj(9), bytes(1024 * 1024)  # built a MiB at a time: RSS stays the node's
    packed = base64.b64encode(b"".join(z.compress(zeros) for _ in range(238)) + z.flush()).decode()
    step = nip90.CHUNK_DATA_BYTES
    pieces = [packed[i : i + step] for i in range(0, len(packed), step)]
    sha = "a" * 64
    enc = msgspec.json.Encoder()
    chunks = [
        sign_event(
            keys,
            kinds.JOB_REQUEST,
            enc.encode(InputChunk(sha256=sha, index=i, total=len(pieces), data=p)).decode(),
            [["chunk", sha, str(i), str(len(pieces))]],
        )
        for i, p in enumerate(pieces)
    ]
    req_ev = nip90.build_request(
        keys, path="bomb.py", language="python", text=None, sha256=sha, size=1000,
        chunk_ids=[c.id for c in chunks], node=None, run_id=None,
    )  # fmt: skip
    req = mod.parse_request(req_ev)
    base_rss = _rss_mib()[0]
    start = time.perf_counter()
    try:
        mod.reassemble(req, chunks)
        outcome = "accepted"
    except Exception as exc:
        outcome = f"{type(exc).__name__}: {exc}"[:60]
    stall = time.perf_counter() - start  # synchronous on the node's loop: all of it is stall
    return {
        "chunks": len(chunks),
        "request_bytes": len(enc.encode(req_ev)),
        "stall_ms": round(stall * 1000, 1),
        "peak_rss_mib": round(_rss_mib()[0], 1),
        "rss_before_mib": round(base_rss, 1),
        "outcome": outcome,
    }


def parse(variant: str, rev: str, size_kib: int) -> dict:
    if variant == "before":
        base = _load_old(rev, "pylon/executors/base.py", "old_base")
        ex = base.DeterministicExecutor(timeout_s=5.0)
    else:
        from pylon.executors.base import DeterministicExecutor

        ex = DeterministicExecutor(timeout_s=5.0)
    text = "(" * (size_kib * 1024)
    out: dict = {"compressed_bytes": len(zlib.compress(text.encode(), 9))}

    async def main() -> None:
        hb = _Heartbeat()
        await ex.run("warm.py", "def f():\n    pass\n" * 200, None)
        async with anyio.create_task_group() as tg:
            tg.start_soon(hb.run)
            await anyio.sleep(0.2)
            hb.max_gap = 0.0
            start = time.perf_counter()
            try:
                await ex.run("attack.c", text, "c")
                out["outcome"] = "parsed"
            except Exception as exc:
                out["outcome"] = f"{type(exc).__name__}: {exc}"[:70]
            out["wall_s"] = round(time.perf_counter() - start, 2)
            await anyio.sleep(0.05)
            tg.cancel_scope.cancel()
        out["max_loop_stall_ms"] = round(hb.max_gap * 1000, 1)
        if hasattr(ex, "aclose"):
            await ex.aclose()

    anyio.run(main)
    own, kids = _rss_mib()
    out["peak_rss_mib"] = round(own, 1)
    out["peak_rss_worker_mib"] = round(kids, 1)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-kib", type=int, default=256)
    ap.add_argument("--rev", default="")
    ap.add_argument("--only", choices=["bomb", "parse"])
    ap.add_argument("--one", nargs=2, metavar=("ATTACK", "VARIANT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    rev = (
        args.rev
        or subprocess.run(
            ["git", "merge-base", "HEAD", "main"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    )
    if args.one:
        attack, variant = args.one
        doc = bomb(variant, rev) if attack == "bomb" else parse(variant, rev, args.size_kib)
        print(json.dumps(doc))
        return
    for attack in ["bomb", "parse"]:
        if args.only and attack != args.only:
            continue
        for variant in ["before", "after"]:
            cmd = [
                sys.executable,
                __file__,
                "--one",
                attack,
                variant,
                "--rev",
                rev,
                "--size-kib",
                str(args.size_kib),
            ]
            res = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
            doc = json.loads(res.stdout) if res.returncode == 0 else {"error": res.stderr[-300:]}
            print(f"{attack:5} {variant:6} {json.dumps(doc)}", flush=True)


if __name__ == "__main__":
    main()
