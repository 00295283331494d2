"""Bad input on the market loop gets a clear error or is dropped and counted; nothing crashes.

Real relay, real node and buyer processes; forged events are published over the real relay.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import anyio
import pytest
from pylon.schemas import kinds, rpc
from pylon.schemas.events import FileResult, ResultTiming

from pylon.keys import NostrKeys, load_or_create_keys
from pylon.localmarket.launcher import LocalMarket
from pylon.nostr import nip90
from pylon.nostr.event import sign_event
from pylon.nostr.relay_client import RelayPool

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def market(tmp_path_factory: pytest.TempPathFactory):
    m = LocalMarket(home=tmp_path_factory.mktemp("bad") / "home", nodes=1, memory_relay=True)
    try:
        m.start(timeout=60)
        yield m
    finally:
        m.stop()


def submit_file(m: LocalMarket, path: Path) -> tuple[int, str, str]:
    out = m.cli("job", "submit", "repo-file", "--input", str(path), "--json")
    return out.returncode, out.stdout, out.stderr


def test_missing_binary_non_utf8_and_oversized_files_are_clear_cli_errors(
    market: LocalMarket, tmp_path: Path
) -> None:
    binary = tmp_path / "blob.py"
    binary.write_bytes(b"abc\x00def")
    latin = tmp_path / "latin.py"
    latin.write_bytes("x = 'caf\xe9'\n".encode("latin-1"))
    big = tmp_path / "big.py"
    big.write_text("x = 1\n" * 200_000)  # 1.2 MB
    cases = {tmp_path / "nope.py": "no such file", binary: "bad_input", latin: "not UTF-8", big: "too_large"}
    for path, needle in cases.items():
        code, out, err = submit_file(market, path)
        assert code != 0 and out == ""
        assert needle in err and err.count("\n") == 1, err


def test_a_file_of_almost_one_mebibyte_maps(market: LocalMarket, tmp_path: Path) -> None:
    big = tmp_path / "big_module.py"
    lines = [
        f"def handler_{i}(request, *args):\n    return request.respond({i}, args)\n\n" for i in range(14_000)
    ]
    big.write_text("".join(lines)[: 1024 * 1024 - 100].rsplit("\n\n", 1)[0] + "\n")
    assert 900_000 < big.stat().st_size <= 1024 * 1024
    code, out, err = submit_file(market, big)
    assert code == 0, err
    job_id = json.loads(out)["job_id"]
    status = wait_terminal(market, job_id)
    assert status["state"] == "completed", status
    res = json.loads(market.cli("job", "results", job_id, "--json").stdout)
    assert res["lines"] > 10_000 and any(s["name"] == "handler_0" for s in res["symbols"])


def test_daemon_not_running_names_it_and_how_to_start(tmp_path: Path) -> None:
    m = LocalMarket(home=tmp_path / "empty", nodes=0)
    out = m.cli("job", "status", "00" * 32)
    assert out.returncode != 0
    assert "buyer daemon is not running" in out.stderr and "pylon buyer up" in out.stderr
    out = m.cli("node", "status", "ghost")
    assert out.returncode != 0 and "pylon node up" in out.stderr


def test_unknown_job_is_a_clear_error(market: LocalMarket) -> None:
    out = market.cli("job", "status", "ab" * 32)
    assert out.returncode != 0 and "unknown job" in out.stderr


def wait_terminal(m: LocalMarket, job_id: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = m.call("buyer", rpc.JobStatusReq(job_id=job_id))
        if st["state"] in ("completed", "failed", "cancelled"):
            return st
        time.sleep(0.1)
    raise TimeoutError(job_id)


def test_forged_results_are_dropped_and_counted(market: LocalMarket, tmp_path: Path) -> None:
    src = tmp_path / "ok.py"
    src.write_text("def ok():\n    return 1\n")
    code, out, err = submit_file(market, src)
    assert code == 0, err
    job_id = json.loads(out)["job_id"]
    done = wait_terminal(market, job_id)
    assert done["state"] == "completed"
    buyer_pk = market.call("buyer", rpc.StatusReq())["pubkey"]
    node_keys = load_or_create_keys(market.home / "nodes" / "n0" / "nostr.key")
    mallory = NostrKeys.generate()
    req = nip90.parse_request(
        sign_event(mallory, kinds.JOB_REQUEST, "", [["i", "x", "text"], ["param", "path", "ok.py"]])
    )
    req = type(req)(
        **{f: getattr(req, f) for f in req.__struct_fields__} | {"job_id": job_id, "buyer": buyer_pk}
    )
    fake = FileResult(path="ok.py", language="python", lines=1, symbols=[], imports=[], summary="forged")
    good_shape = nip90.build_result(node_keys, request=req, result=fake, timing=ResultTiming(1, 2, 3))
    forged = [
        nip90.build_result(mallory, request=req, result=fake, timing=ResultTiming(1, 2, 3)),  # not assigned
        sign_event(node_keys, kinds.JOB_RESULT, good_shape.content + " ", good_shape.tags),  # hash mismatch
        sign_event(
            node_keys,
            kinds.JOB_RESULT,
            '{"oops": 1}',
            [["x", nip90.sha256_hex(b'{"oops": 1}')] if t[0] == "x" else t for t in good_shape.tags],
        ),
    ]
    # A bad signature never gets this far: the relay itself refuses it.
    before = market.call("buyer", rpc.StatusReq())["dropped"]

    async def publish_all() -> None:
        pool = RelayPool([market.relay_url])
        async with anyio.create_task_group() as tg:
            await pool.start(tg)
            for ev in forged:
                await pool.publish(ev, wait_ok=5)
            tg.cancel_scope.cancel()

    anyio.run(publish_all)
    want = {"result_from_unassigned": 1, "hash_mismatch": 1, "bad_payload": 1}
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        after = market.call("buyer", rpc.StatusReq())["dropped"]
        grown = {k: after.get(k, 0) - before.get(k, 0) for k in want}
        if grown == want:
            break
        time.sleep(0.1)
    assert grown == want, after
    res = json.loads(market.cli("job", "results", job_id, "--json").stdout)
    assert res["summary"] != "forged"
    assert market.call("buyer", rpc.JobStatusReq(job_id=job_id))["result_id"] == done["result_id"]
