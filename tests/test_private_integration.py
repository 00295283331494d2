"""Private code on a live market: `pylon map` of a local repo runs NIP-44 encrypted jobs.

A real relay, mint, buyer and nodes (LocalMarket). One node (`pow0`) demands proof of work
the buyer does not do, so it silently drops what it is assigned and every such job is
re-issued to another node: the re-issued attempts (and their chunk events) must be sealed
for the new node. Then a stranger reads the relay raw, every event of every kind, and must
find no line of the source, no file name and no path; the buyer's own `pylon trail` decrypts
and verifies, a trail without the key verifies signatures and links and says `encrypted`.
A public run of the same code in the same market shows the scan would have found it.
"""

from __future__ import annotations

import base64
import json
import random
import string
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import anyio
import pytest
from pylon.schemas import kinds, rpc

from pylon.keys import load_or_create_keys
from pylon.localmarket.launcher import LocalMarket, paid_market_args
from pylon.nostr import nip90, private_jobs
from pylon.nostr.event import NostrEvent, encode_event
from pylon.nostr.filters import Filter
from pylon.provenance.fetch import RawReader

pytestmark = pytest.mark.integration

T = TypeVar("T")
SECRET = "PRIVATE_MARKER_7f3a"


def wait_for(fn: Callable[[], T | None], timeout: float, what: str) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = fn()
        if got:
            return got
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def git(root: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.org", *args],
        cwd=root,
        check=True,
        capture_output=True,
    )


def make_repo(root: Path) -> dict[str, str]:
    """A small private repository: distinctive names and lines, one file big enough for chunks."""
    rng = random.Random(44)
    files: dict[str, str] = {}
    for i in range(6):
        name = f"confidential_{SECRET.lower()}_{i}.py"
        body = [f"SECRET_{i} = '{SECRET}-{i}-{rng.getrandbits(64):x}'\n"]
        body += [f"def handler_{i}_{j}_{SECRET.lower()}(x):\n    return x + {j}\n" for j in range(8)]
        files[f"internal_{SECRET.lower()}/{name}"] = "".join(body)
    # ~120 KB of low-redundancy code: chunked even compressed.
    big = [
        f"def big_{k}_{''.join(rng.choices(string.ascii_lowercase, k=24))}():\n"
        f"    return '{''.join(rng.choices(string.ascii_letters, k=40))}'\n"
        for k in range(1400)
    ]
    files[f"internal_{SECRET.lower()}/big_{SECRET.lower()}.py"] = f"# {SECRET} big\n" + "".join(big)
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", f"{SECRET} initial")
    return files


@pytest.fixture(scope="module")
def market(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalMarket]:
    node_args, buyer_args = paid_market_args(True)
    m = LocalMarket(
        home=tmp_path_factory.mktemp("private") / "home",
        nodes=0,
        with_mint=True,
        memory_relay=True,
        node_args=node_args,
        buyer_args=[*buyer_args, "--pickup-timeout", "3"],
    )
    try:
        m.start()
        m.node_args = [*node_args, "--min-pow", "12"]  # drops every request: all get re-issued
        m.start_node("pow0")
        m.node_args = node_args
        m.start_node("n1")
        m.start_node("n2")
        m.wait_ready(nodes=3)
        m.fund("buyer")
        yield m
    finally:
        m.stop()


def cli_json(m: LocalMarket, *args: str, timeout: float = 300) -> Any:
    proc = m.cli(*args, "--json", timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)


def relay_dump(m: LocalMarket) -> list[NostrEvent]:
    """Everything the relay stores, as a stranger with no key reads it."""

    async def go() -> list[NostrEvent]:
        async with RawReader([m.relay_url], timeout=10) as reader:
            every = [Filter()] + [Filter(kinds=[k]) for k in kinds.__dict__.values() if isinstance(k, int)]
            events = await reader.query(every)
            assert reader.truncated == 0 and reader.incomplete == 0
            return events

    return anyio.run(go)


def leaks(events: list[NostrEvent], files: dict[str, str], repo: Path) -> list[str]:
    dump = b"\n".join(encode_event(e) for e in events).decode()
    found = [
        line
        for text in files.values()
        for line in {ln.strip() for ln in text.splitlines()}
        if len(line) >= 8 and line in dump
    ]
    found += [n for rel in files for n in (rel, Path(rel).name) if n in dump]
    found += [s for s in (str(repo), repo.name, SECRET, SECRET.lower()) if s in dump]
    return found


def node_keys(m: LocalMarket, name: str) -> private_jobs.Sealer:
    return private_jobs.Sealer(load_or_create_keys(m.home / "nodes" / name / "nostr.key"))


def test_private_map_run_leaks_nothing_and_the_buyer_trail_verifies(
    market: LocalMarket, tmp_path: Path
) -> None:
    repo = tmp_path / f"repo_{SECRET.lower()}"
    repo.mkdir()
    files = make_repo(repo)
    out = tmp_path / "out"
    summary = cli_json(market, "map", str(repo), "--out", str(out))
    assert summary["private"] is True
    assert summary["completed"] == len(files), summary
    # The artifacts (local) have the real content: the buyer decrypted every result.
    repo_map = json.loads((out / "repo_map.json").read_text())
    assert set(repo_map["files"]) == set(files)
    assert any(SECRET.lower() in s for s in repo_map["symbols"])
    paid, done = market.wait_paid(timeout=120)
    assert paid == done >= len(files)  # spot checks (on by default) add jobs of their own

    events = relay_dump(market)
    assert not leaks(events, files, repo), leaks(events, files, repo)[:5]

    # Every request, chunk and result of the run is sealed, and each attempt to its own node.
    run_id = summary["run_id"]
    # Cancels (a lost or superseded attempt: request id, node and an error code) stay public.
    reqs = [
        e
        for e in events
        if e.kind == kinds.JOB_REQUEST and not nip90.is_run_root(e) and not nip90.is_cancel(e)
    ]
    chunks = [e for e in reqs if nip90.is_chunk(e)]
    requests = [e for e in reqs if not nip90.is_chunk(e)]
    results = [e for e in events if e.kind == kinds.JOB_RESULT]
    assert chunks, "the big file should have travelled in chunk events"
    assert all(private_jobs.is_encrypted(e) for e in reqs + results)
    sealers = {name: node_keys(market, name) for name in ("pow0", "n1", "n2")}
    by_pub = {s.pubkey: s for s in sealers.values()}
    retried = [e for e in requests if any(t[0] == "e" and t[3:4] == ["retry"] for t in e.tags)]
    assert retried, "pow0 drops its jobs: some must have been re-issued"
    for ev in requests:
        node = ev.tag_value("p")
        assert node in by_pub
        req = private_jobs.parse_request(ev, by_pub[node])
        assert (req.run_id == run_id or req.check_of) and req.path in files  # spot checks: no run
        # ...and no other node can read it.
        for other in by_pub.values():
            if other.pubkey != node:
                assert private_jobs.parse_request(ev, other).path == ""
        if req.chunk_ids:
            mine = [c for c in chunks if c.id in req.chunk_ids]
            assert len(mine) == len(req.chunk_ids) and all(c.tag_value("p") == node for c in mine)
            assert nip90.reassemble(req, private_jobs.open_chunks(req, mine, by_pub[node])) == files[req.path]
    # A re-issued attempt went to another node than the one that dropped it.
    assert all(e.tag_value("p") != sealers["pow0"].pubkey for e in retried)

    # The buyer's trail (PYLON_HOME has its key) decrypts and verifies every link.
    job = next(t[1] for t in retried[0].tags if t[0] == "e" and t[3:4] == ["retry"])
    trail = wait_for(
        lambda: (t := cli_json(market, "trail", job, "--relay", market.relay_url)) and t["verified"] and t,
        60,
        "the buyer's trail to verify",
    )
    assert trail["encrypted"] and trail["decrypted"] and trail["attempts"] >= 2
    assert all(link["valid"] for link in trail["chain"]), trail["chain"]
    # Anyone else: signatures, links and payment verify; the contents are not readable.
    blind = cli_json(market, "trail", job, "--relay", market.relay_url, "--no-decrypt")
    assert blind["verified"] and blind["encrypted"] and not blind["decrypted"]
    assert SECRET.lower() not in json.dumps(blind)
    result_link = next(link for link in blind["chain"] if link["role"] == "result" and link["on_path"])
    assert "encrypted" in result_link["detail"]
    # Stats replayed from the relay alone still count the private jobs (from their public tags).
    stats = cli_json(market, "stats", "--replay", "--relay", market.relay_url)
    assert stats["jobs_completed"] >= len(files), stats


def test_public_run_is_readable_which_the_scan_would_catch(market: LocalMarket, tmp_path: Path) -> None:
    repo = tmp_path / "pub"
    repo.mkdir()
    (repo / "open.py").write_text(f"OPEN = '{SECRET}-public'\n")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "public")
    summary = cli_json(market, "map", str(repo), "--public", "--out", str(tmp_path / "out"))
    assert summary["private"] is False and summary["completed"] == 1
    dump = b"\n".join(encode_event(e) for e in relay_dump(market)).decode()
    assert f"OPEN = '{SECRET}-public'" in dump


def test_rpc_refuses_an_unknown_privacy(market: LocalMarket) -> None:
    with pytest.raises(Exception, match="privacy"):
        market.call("buyer", rpc.MapReq(repo="/nonexistent", privacy="secretish"))


def test_tampered_and_foreign_private_requests_are_counted_drops(market: LocalMarket) -> None:
    """A stranger's encrypted requests to n1: a broken ciphertext and a sealed input whose hash
    lies. The node drops and counts both (no feedback, no crash) and keeps working."""
    from pylon.keys import NostrKeys
    from pylon.nostr.event import sign_event
    from pylon.nostr.relay_client import RelayPool

    n1 = node_keys(market, "n1").pubkey
    stranger = NostrKeys.generate()
    sealer = private_jobs.Sealer(stranger)
    ev, _ = private_jobs.build_request(
        stranger,
        sealer,
        node=n1,
        path="x.py",
        language="python",
        text="x = 1\n",
        sha256="00" * 32,
        size=6,
        run_id=None,
    )
    raw = bytearray(base64.b64decode(ev.content))
    raw[40] ^= 1
    tampered = sign_event(stranger, ev.kind, base64.b64encode(bytes(raw)).decode(), ev.tags)
    lying, _ = private_jobs.build_request(
        stranger,
        sealer,
        node=n1,
        path="y.py",
        language="python",
        text="y = 2\n",
        sha256="11" * 32,
        size=6,
        run_id=None,
    )
    lying = sign_event(
        stranger, lying.kind, lying.content, [["x", "22" * 32] if t[0] == "x" else t for t in lying.tags]
    )

    async def publish() -> None:
        pool = RelayPool([market.relay_url])
        async with anyio.create_task_group() as tg:
            await pool.start(tg)
            for e in (tampered, lying):
                await pool.publish(e, wait_ok=10)
            tg.cancel_scope.cancel()

    anyio.run(publish)
    dropped = wait_for(
        lambda: (
            (d := market.call("n1", rpc.StatusReq())["dropped"]).get("nip44_bad_mac")
            and d.get("hash_mismatch")
            and d
        ),
        30,
        "n1 to count both drops",
    )
    assert dropped["nip44_bad_mac"] >= 1 and dropped["hash_mismatch"] >= 1
    assert market.call("n1", rpc.StatusReq())["state"] == "online"
