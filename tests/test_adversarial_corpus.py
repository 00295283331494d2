"""A corpus of hostile events sent to a running market over its real relay.

Attackers: an outsider with its own key, and (for results) the assigned node's own key, as a
node that is buggy or compromised would sign. Every event is either refused by the relay
(bad signature, oversized) or reaches a daemon and is dropped there and counted under its
reason in `status.dropped` (or answered with an error feedback and counted); no daemon
crashes, the market keeps serving, and both daemons' SQLite files pass integrity_check.
A hostile repo (a symlink out of the tree, a huge file, non-UTF-8 and binary files) maps
what is mappable and counts the rest.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import zlib
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest
from faults_support import accepted_results_per_job, integrity_ok, jobs, node_pubkey, relay_query, wait_for
from pylon.schemas import kinds, rpc
from pylon.schemas.events import FileResult

from pylon.keys import NostrKeys, load_or_create_keys
from pylon.localmarket.launcher import LocalMarket
from pylon.nostr import nip13, nip90
from pylon.nostr.event import NostrEvent, sign_event
from pylon.nostr.filters import Filter
from pylon.nostr.relay_client import PublishError, RelayPool

pytestmark = pytest.mark.integration

POW = 8


def publish_all(url: str, events: list[NostrEvent]) -> dict[str, str]:
    """Publish each event and say what the relay answered: ok, or rejected: why."""

    async def go() -> dict[str, str]:
        pool = RelayPool([url])
        out: dict[str, str] = {}
        async with anyio.create_task_group() as tg:
            await pool.start(tg, wait_s=10)
            for ev in events:
                try:
                    out[ev.id] = "ok" if await pool.publish(ev, wait_ok=10) else "no answer"
                except PublishError as exc:
                    out[ev.id] = f"rejected: {exc}"
            tg.cancel_scope.cancel()
        return out

    return anyio.run(go)


def status(m: LocalMarket, target: str) -> dict[str, Any]:
    return m.call(target, rpc.StatusReq())


def counted(m: LocalMarket, target: str, want: dict[str, int]) -> dict[str, int] | None:
    """The daemon's drop counters once each reason in `want` reached its count."""
    got = status(m, target)["dropped"]
    return got if all(got.get(k, 0) >= n for k, n in want.items()) else None


def submit(m: LocalMarket, name: str, text: str) -> str:
    return m.call("buyer", rpc.SubmitReq(path=name, text=text, language="python"))["job_id"]


def wait_completed(m: LocalMarket, job_id: str, timeout: float = 30) -> dict[str, Any]:
    return wait_for(
        f"job {job_id[:8]} completed",
        lambda: (t := m.call("buyer", rpc.JobStatusReq(job_id=job_id)))["state"] == "completed" and t,
        timeout,
        0.1,
    )


def result_event(
    keys: NostrKeys,
    job_id: str,
    buyer: str,
    content: str,
    *,
    x: str | None = None,
    encoding: str | None = None,
) -> NostrEvent:
    tags = [["e", job_id], ["p", buyer], ["x", x or nip90.sha256_hex(content.encode())], ["amount", "0"]]
    if encoding:
        tags.append(["encoding", encoding])
    return sign_event(keys, kinds.JOB_RESULT, content, tags)


def request_tags(
    node: str,
    *,
    path: str | None = "evil.py",
    text: str | None = "x = 1\n",
    params: dict[str, str] | None = None,
    extra: list[list[str]] | None = None,
) -> list[list[str]]:
    tags: list[list[str]] = []
    if text is not None:
        tags.append(["i", text, "text"])
    if path is not None:
        tags.append(["param", "path", path])
    tags += [["param", k, v] for k, v in (params or {}).items()]
    return [*tags, *(extra or []), ["p", node]]


def lucky_low_commitment(keys: NostrKeys, tags: list[list[str]]) -> NostrEvent:
    """An id with >= POW zero bits whose nonce tag commits to only 2: must still be refused."""
    n = 0
    while True:
        ev = sign_event(keys, kinds.JOB_REQUEST, "", [*tags, ["nonce", str(n), "2"]])
        if nip13.leading_zero_bits(ev.id) >= POW:
            return ev
        n += 1


def hostile_repo(root: Path, outside: Path) -> Path:
    root.mkdir(parents=True)
    for i in range(3):
        (root / f"good_{i}.py").write_text(f"def good_{i}():\n    return {i}\n")
    outside.write_text("SECRET = 'do not map me'\n")
    os.symlink(outside, root / "escape.py")
    os.symlink("/etc", root / "etc_link")
    (root / "huge.py").write_text("x = 1\n" * 400_000)  # 2.4 MB
    (root / "latin1.py").write_bytes("# caf\xe9\nx = 1\n".encode("latin-1"))
    (root / "binary.py").write_bytes(b"x = 1\n\x00\x01\x02" * 100)
    return root


def test_hostile_corpus_is_dropped_and_counted(tmp_path: Path) -> None:
    m = LocalMarket(
        home=tmp_path / "home",
        nodes=2,
        memory_relay=True,
        heartbeat_s=1.0,
        node_args=["--min-pow", str(POW)],
        buyer_args=["--pow", str(POW), "--pickup-timeout", "5", "--result-timeout", "8"],
    )
    evil = NostrKeys.generate()
    try:
        m.start(timeout=60)
        buyer = status(m, "buyer")["pubkey"]
        nodes = {node_pubkey(m, n): n for n in m.node_names()}
        n0 = node_pubkey(m, "n0")

        # A job as it should be: mined to the nodes' --min-pow, served, verified.
        legit = submit(m, "legit.py", "def legit():\n    return 1\n")
        done = wait_completed(m, legit)
        assert nip13.difficulty(relay_query(m.relay_url, [Filter(ids=[legit])])[0]) >= POW
        served_by = load_or_create_keys(m.home / "nodes" / nodes[done["provider_pubkey"]] / "nostr.key")
        genuine = relay_query(m.relay_url, [Filter(ids=[done["result_id"]])])[0]

        # --- refused by the relay itself ------------------------------------------------------
        good = sign_event(evil, kinds.JOB_RESULT, "{}", [["e", legit], ["p", buyer]])
        forged_sig = msgspec.structs.replace(good, sig="00" * 64)
        forged_id = msgspec.structs.replace(good, content="{ }")
        oversized = sign_event(evil, kinds.JOB_RESULT, "A" * 70_000, [["e", legit], ["p", buyer]])
        answers = publish_all(m.relay_url, [forged_sig, forged_id, oversized])
        assert all(a.startswith("rejected") for a in answers.values()), answers

        # --- reach the buyer: swarm noise, foreign results, replays ---------------------------
        fake_result = msgspec.json.encode(
            FileResult(path="legit.py", language="python", lines=1, symbols=[], imports=[], summary="forged")
        ).decode()
        to_buyer = [
            # (announces and heartbeats are replaceable: one per key and d, or the relay keeps one)
            sign_event(
                evil, kinds.ANNOUNCE, '{"name":"x"}', [["d", "a"], ["k", "5300"]]
            ),  # not a Pylon handler
            sign_event(evil, kinds.ANNOUNCE, "{not json", [["d", "b"], ["k", "5931"]]),
            sign_event(NostrKeys.generate(), kinds.HEARTBEAT, "garbage", [["d", "x"]]),
            sign_event(
                NostrKeys.generate(),
                kinds.HEARTBEAT,
                '{"state": "exploding", "queue_depth": "many"}',
                [["d", "x"]],
            ),
            sign_event(NostrKeys.generate(), kinds.HEARTBEAT, "[" * 5000 + "]" * 5000, [["d", "x"]]),
            result_event(evil, legit, buyer, fake_result),  # a result from a key never assigned
            sign_event(evil, kinds.JOB_FEEDBACK, "", [["status", "error"], ["e", legit], ["p", buyer]]),
            result_event(evil, "f" * 64, buyer, fake_result),  # for a job that does not exist
            sign_event(
                evil, kinds.JOB_FEEDBACK, "", [["status", "processing"], ["e", "f" * 64], ["p", buyer]]
            ),
            sign_event(evil, kinds.JOB_FEEDBACK, "", [["status"], ["p", buyer]]),
            genuine,  # the very same result again
            result_event(served_by, legit, buyer, fake_result),  # its node answering the finished job again
        ]
        answers = publish_all(m.relay_url, to_buyer)
        assert answers[genuine.id].startswith(("ok", "rejected")), answers
        assert wait_for(
            "buyer drops",
            lambda: counted(
                m,
                "buyer",
                {
                    "not_pylon_announce": 1,
                    "bad_announce": 1,
                    "bad_heartbeat": 3,
                    "result_from_unassigned": 1,
                    "feedback_from_unassigned": 1,
                    "unknown_job": 2,
                    "malformed_feedback": 1,
                    "late_result": 1,
                },
            ),
            20,
        )

        # --- results that reach a live job, signed by the very node it was assigned to ---------
        for name in m.node_names():  # frozen: the job waits, and nothing real can answer first
            m.procs[f"node-{name}"].popen.send_signal(signal.SIGSTOP)  # type: ignore[union-attr]
        try:
            target = submit(m, "target.py", "def target():\n    return 2\n")
            assigned = m.call("buyer", rpc.JobStatusReq(job_id=target))["provider_pubkey"]
            node_keys = load_or_create_keys(m.home / "nodes" / nodes[assigned] / "nostr.key")
            bomb = base64.b64encode(zlib.compress(b"\x00" * (20 * 1024 * 1024), 9)).decode()
            other = msgspec.json.encode(
                FileResult(
                    path="target.py",
                    language="python",
                    lines=1,
                    symbols=[],
                    imports=[],
                    summary="forged",
                    input_sha256="0" * 64,
                )
            ).decode()
            forged = [
                result_event(node_keys, target, buyer, fake_result, x="0" * 64),  # x does not match
                result_event(node_keys, target, buyer, '{"path": 7}'),  # wrong shape, right hash
                result_event(node_keys, target, buyer, "not json at all"),
                result_event(node_keys, target, buyer, bomb, encoding="zlib+base64"),  # inflates to 20 MiB
                result_event(node_keys, target, buyer, "%%%", encoding="zlib+base64"),
                result_event(node_keys, target, buyer, other),  # for some other input
            ]
            assert set(publish_all(m.relay_url, forged).values()) == {"ok"}
            assert wait_for(
                "forged results dropped",
                lambda: counted(
                    m,
                    "buyer",
                    {"hash_mismatch": 1, "bad_payload": 3, "too_large": 1, "result_for_other_input": 1},
                ),
                20,
            )
            assert m.call("buyer", rpc.JobStatusReq(job_id=target))["state"] != "completed"
        finally:
            for name in m.node_names():
                m.procs[f"node-{name}"].popen.send_signal(signal.SIGCONT)  # type: ignore[union-attr]
        t = wait_completed(m, target, 40)
        assert m.call("buyer", rpc.JobResultsReq(job_id=target))["summary"] != "forged"
        assert t["provider_pubkey"] in nodes

        # --- requests with absurd params, and spam without proof of work ------------------------
        def mined(tags: list[list[str]]) -> NostrEvent:
            return nip13.mine(evil, kinds.JOB_REQUEST, "", tags, POW)

        requests = [
            sign_event(evil, kinds.JOB_REQUEST, "", request_tags(n0)),  # no proof of work
            lucky_low_commitment(evil, request_tags(n0)),
            mined(request_tags(n0, path=None)),
            mined(request_tags(n0, text=None)),
            mined(request_tags(n0, params={"size": "1e9"})),
            mined(request_tags(n0, extra=[["bid", "lots"]])),
            mined(request_tags(n0, params={"size": str(10**12)})),
            mined(request_tags(n0, params={"sha256": "0" * 64})),  # text that is not what it claims
            mined(request_tags(n0, text=None, extra=[["i", "e" * 64, "event"]], params={"sha256": "1" * 64})),
            mined(
                request_tags(
                    n0,
                    path="../../../../etc/passwd" + "/x" * 2000,
                    params={"language": "🤡" * 100, "tasks": "rm -rf /"},
                )
            ),
        ]
        assert set(publish_all(m.relay_url, requests).values()) == {"ok"}
        n0_drops = wait_for(
            "node drops",
            lambda: counted(
                m,
                "n0",
                {
                    "pow_too_low": 2,
                    "missing_param": 1,
                    "missing_input": 1,
                    "bad_size": 1,
                    "bad_bid": 1,
                    "rejected_too_large": 1,
                },
            ),
            20,
        )
        assert n0_drops
        wait_for("bad inputs failed", lambda: status(m, "n0")["failures"].get("bad_input", 0) >= 2, 30)

        # --- a hostile repo ---------------------------------------------------------------------
        repo = hostile_repo(tmp_path / "repo", tmp_path / "outside.py")
        out = m.cli("map", str(repo), "--json", "--out", str(tmp_path / "out"), timeout=120)
        assert out.returncode == 0, out.stderr
        summary = json.loads(out.stdout)
        assert summary["completed"] == 3 and summary["failed"] == 0, summary
        assert sum(summary["skipped"].values()) >= 4, summary["skipped"]
        mapped = json.loads((tmp_path / "out" / "repo_map.json").read_text())["files"]
        assert set(mapped) == {"good_0.py", "good_1.py", "good_2.py"}
        assert "do not map me" not in (tmp_path / "out" / "repo_map.json").read_text()

        # --- still standing -----------------------------------------------------------------------
        for p in m.procs.values():
            assert p.alive(), f"{p.name} died"
        wait_completed(m, submit(m, "after.py", "def after():\n    return 3\n"))
        n_jobs = len(jobs(m))
        per_job = wait_for(
            "results stored", lambda: (r := accepted_results_per_job(m)) and len(r) == n_jobs and r, 10
        )
        assert set(per_job.values()) == {1}
    finally:
        m.stop()
    for db in [m.home / "buyer" / "telemetry.db", *(m.home / "nodes").glob("*/node.db")]:
        assert integrity_ok(db), db
