"""Issue 10 item 5: `pylon map https://user:token@host/repo` publishes, logs and stores no token.

The repo is served over git's smart HTTP protocol from a loopback server; the URL carries
credentials. Afterwards the relay's events, every file under PYLON_HOME (the buyer's SQLite
and its WAL, every daemon log, the clones directory) and the artifacts are searched for the
secret. On the old code the signed run root, the `runs` table and the buyer's log held it.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import anyio
import pytest
from pylon.schemas import rpc

from pylon.localmarket.launcher import LocalMarket
from pylon.nostr.event import encode_event
from pylon.nostr.filters import Filter
from pylon.nostr.relay_client import RelayPool

pytestmark = pytest.mark.integration

SECRET = "tok-9f8e7d6c5b4a"
USER = "alice-user"


def git(root: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.org", *args],
        cwd=root,
        check=True,
        capture_output=True,
    )


@pytest.fixture
def served_repo(tmp_path: Path) -> Iterator[str]:
    work = tmp_path / "work"
    work.mkdir()
    (work / "app.py").write_text("def main():\n    return 42\n")
    (work / "util.py").write_text("class Helper:\n    pass\n")
    git(work, "init", "-q", "-b", "main")
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", "init")
    site = tmp_path / "site"
    site.mkdir()
    git(tmp_path, "clone", "-q", "--bare", str(work), str(site / "repo.git"))

    class SmartHttp(BaseHTTPRequestHandler):
        """git's smart HTTP protocol through `git http-backend` (a shallow clone needs it)."""

        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            self._cgi()

        def do_POST(self) -> None:
            self._cgi()

        def _cgi(self) -> None:
            path, _, query = self.path.partition("?")
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            env = {
                "PATH": os.environ["PATH"],
                "GIT_PROJECT_ROOT": str(site),
                "GIT_HTTP_EXPORT_ALL": "1",
                "REQUEST_METHOD": self.command,
                "PATH_INFO": path,
                "QUERY_STRING": query,
                "CONTENT_TYPE": self.headers.get("Content-Type", ""),
                "CONTENT_LENGTH": str(len(body)),
                "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding", ""),
                "GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
                "REMOTE_ADDR": "127.0.0.1",
            }
            out = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True).stdout
            head, _, payload = out.partition(b"\r\n\r\n")
            status = 200
            headers = []
            for line in head.decode().split("\r\n"):
                name, _, value = line.partition(":")
                if name.lower() == "status":
                    status = int(value.split()[0])
                elif name:
                    headers.append((name, value.strip()))
            self.send_response(status)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    server = ThreadingHTTPServer(("127.0.0.1", 0), SmartHttp)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://{USER}:{SECRET}@127.0.0.1:{server.server_address[1]}/repo.git"
    finally:
        server.shutdown()
        t.join()


def _relay_events(url: str) -> list[bytes]:
    async def go() -> list[bytes]:
        pool = RelayPool([url])
        async with anyio.create_task_group() as tg:
            await pool.start(tg)
            evs = await pool.query([Filter(kinds=[5931, 6931, 7000, 31990, 30333])], timeout=20)
            tg.cancel_scope.cancel()
        return [encode_event(e) for e in evs]

    return anyio.run(go)


def test_credentials_in_a_repo_url_go_nowhere(served_repo: str, tmp_path: Path) -> None:
    home = tmp_path / "home"
    out = tmp_path / "out"
    market = LocalMarket(home=home, nodes=1, memory_relay=True, heartbeat_s=1.0, quiet=False)
    try:
        market.start(timeout=90)
        # A credentialed URL maps private by default (its root sealed); --public publishes the
        # run root in the clear, which must still name the repo without its credentials.
        res = market.cli("map", served_repo, "--public", "--out", str(out), "--json", timeout=180)
        assert res.returncode == 0, res.stderr
        summary = json.loads(res.stdout)
        assert summary["completed"] == 2 and summary["private"] is False, summary
        events = _relay_events(market.relay_url)
        assert any(b"127.0.0.1" in e and b"repo.git" in e for e in events)  # the root names the repo
        leaks = [e[:200] for e in events if SECRET.encode() in e or USER.encode() in e]
        assert leaks == [], leaks
        runs = market.call("buyer", rpc.RunsReq())
        assert SECRET not in json.dumps(runs)
        assert SECRET not in res.stdout + res.stderr
    finally:
        market.stop()
    scanned = 0
    for root in (home, out):
        for p in root.rglob("*"):
            if p.is_file():
                scanned += 1
                data = p.read_bytes()
                assert SECRET.encode() not in data, f"token found in {p}"
                assert USER.encode() not in data, f"user name found in {p}"
    assert scanned > 5
    clones = home / "buyer" / "clones"
    assert not clones.exists() or not any(clones.iterdir()), "the clone was not deleted after the run"
