"""A fake Ollama server for tests and benchmarks.

Ollama cannot be installed here and no model weights can be downloaded, so the Ollama
executor and `pylon doctor` are tested against this loopback HTTP server instead. It speaks
the parts of Ollama's REST API that Pylon uses, in the shapes the real server sends:

- `GET /api/tags`      -> {"models": [{"name", "model", "modified_at", "size", "digest", "details"}]}
- `GET /api/version`   -> {"version": ...}
- `POST /api/chat`     (non-streaming only) -> {"model", "created_at", "message": {"role", "content"},
                          "done": true, "done_reason": "stop", ...durations}
- a model that is not in `models` -> 404 {"error": "model \"x\" not found, try pulling it first"}

Knobs: `models`, `reply` (canned content: a dict sent as JSON, a raw string, or a function of
the request body), `reduce_reply` (content for chats without `format`), `delay_s` (model latency
per chat request; a benchmark uses 1 s), `max_parallel` (like OLLAMA_NUM_PARALLEL: chats beyond
it queue), and `fail` for the first `fail_times` chats (None = every chat):

- "garbage"      content that is not JSON at all
- "wrong_schema" JSON of the wrong shape
- "error500"     500 {"error": "llama runner process has terminated ..."}
- "busy"         503 {"error": "server busy ..."} (Ollama's queue-full answer)
- "drop"         the connection is closed without a response
- "hang"         no answer until the server stops

Use it in a thread from sync or async code (`with FakeOllama() as fake:` or
`async with FakeOllama() as fake:`; it binds port 0 unless told otherwise), or as a separate
process: `python tests/ollama_fake.py --port 0 --delay 1` prints its URL on stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

FAIL_MODES = ("garbage", "wrong_schema", "error500", "busy", "drop", "hang")

DEFAULT_MODEL = "qwen2.5-coder:1.5b"


def normalize_model(name: str) -> str:
    """Ollama treats a name without a tag as `name:latest`."""
    return name if ":" in name else f"{name}:latest"


class RecordedRequest:
    __slots__ = ("body", "method", "path", "received")

    def __init__(self, method: str, path: str, body: Any) -> None:
        self.method = method
        self.path = path
        self.body = body
        self.received = time.monotonic()

    def __repr__(self) -> str:
        return f"RecordedRequest({self.method} {self.path})"


class FakeOllama:
    def __init__(
        self,
        *,
        models: list[str] | tuple[str, ...] = (DEFAULT_MODEL,),
        reply: dict[str, Any] | str | Callable[[dict[str, Any]], str] | None = None,
        reduce_reply: str = "This repository is a small example project. It is organised into modules.",
        delay_s: float = 0.0,
        max_parallel: int = 0,
        fail: str | None = None,
        fail_times: int | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        version: str = "0.6.3-fake",
    ) -> None:
        if fail is not None and fail not in FAIL_MODES:
            raise ValueError(f"unknown fail mode {fail!r}; one of {FAIL_MODES}")
        self.models = list(models)
        self.reply = reply
        self.reduce_reply = reduce_reply
        self.delay_s = delay_s
        self.fail = fail
        self.fail_times = fail_times
        self.version = version
        self.requests: list[RecordedRequest] = []
        self.peak_in_flight = 0
        self.clients_gone = 0  # answers the client hung up on (not the fake's errors)
        self._in_flight = 0
        self._chats_seen = 0
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._gate = threading.BoundedSemaphore(max_parallel) if max_parallel > 0 else None
        self._host = host
        self._port = port
        self._server: ThreadingHTTPServer | None = None
        self._connections: set[socket.socket] = set()
        self._bound_port: int | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> FakeOllama:
        handler = type("Handler", (_Handler,), {"fake": self})
        self._server = _Server((self._host, self._port), handler)
        self._server.fake = self
        self._server.daemon_threads = True
        self._bound_port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-ollama", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # releases "hang" and delayed handlers
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        # Keep-alive connections outlive the listener; a stopped server must not answer on them.
        with self._lock:
            live, self._connections = list(self._connections), set()
        for conn in live:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> FakeOllama:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> FakeOllama:
        return self.start()

    async def __aexit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The bound port; still known after stop(), so a test can aim at a server that went away."""
        if self._bound_port is None:
            raise RuntimeError("fake ollama was never started")
        return self._bound_port

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self.port}"

    @property
    def chat_requests(self) -> list[dict[str, Any]]:
        with self._lock:
            return [r.body for r in self.requests if r.path == "/api/chat"]

    # --- behaviour ---------------------------------------------------------------------------

    def _record(self, method: str, path: str, body: Any) -> None:
        with self._lock:
            self.requests.append(RecordedRequest(method, path, body))

    def _next_chat_fails(self) -> str | None:
        with self._lock:
            self._chats_seen += 1
            if self.fail is None:
                return None
            if self.fail_times is None or self._chats_seen <= self.fail_times:
                return self.fail
            return None

    def _has_model(self, name: str) -> bool:
        return normalize_model(name) in {normalize_model(m) for m in self.models}

    def tags_body(self) -> dict[str, Any]:
        return {
            "models": [
                {
                    "name": normalize_model(m),
                    "model": normalize_model(m),
                    "modified_at": "2025-01-01T00:00:00.000000000Z",
                    "size": 986_061_892,
                    "digest": hashlib.sha256(m.encode()).hexdigest(),
                    "details": {
                        "parent_model": "",
                        "format": "gguf",
                        "family": "qwen2",
                        "families": ["qwen2"],
                        "parameter_size": "1.5B",
                        "quantization_level": "Q4_K_M",
                    },
                }
                for m in self.models
            ]
        }

    def content_for(self, body: dict[str, Any], mode: str | None) -> str:
        if mode == "garbage":
            return "Sure! Here is the summary you asked for: {purpose: parses things"
        if mode == "wrong_schema":
            return json.dumps({"summary": 3, "purpose": ["not", "a", "string"]})
        if "format" not in body:
            return self.reduce_reply
        if callable(self.reply):
            return self.reply(body)
        if isinstance(self.reply, str):
            return self.reply
        if isinstance(self.reply, dict):
            return json.dumps(self.reply)
        return json.dumps(
            {
                "purpose": "Example module used in tests.",
                "summary": "Defines a few helpers. It is summarised by a fake model.",
                "key_symbols": [],
            }
        )

    def wait(self, seconds: float) -> bool:
        """Sleep up to `seconds`; True when the server is stopping instead."""
        return self._stopping.wait(seconds)


class _Server(ThreadingHTTPServer):
    fake: FakeOllama

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client gone mid-answer (a node killed -9 in the fault tests) is not the fake's error:
        # counted, not printed as a traceback.
        if isinstance(sys.exc_info()[1], ConnectionError):
            with self.fake._lock:
                self.fake.clients_gone += 1
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    fake: FakeOllama
    protocol_version = "HTTP/1.1"
    server_version = "FakeOllama"
    # Headers and body go out as two writes: with Nagle on, the body waits for the client's
    # delayed ACK (~40 ms a chat on Linux). Go's net/http, which Ollama is, sets TCP_NODELAY too.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass

    def setup(self) -> None:
        super().setup()
        with self.fake._lock:
            self.fake._connections.add(self.connection)

    def finish(self) -> None:
        with self.fake._lock:
            self.fake._connections.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def _send_json(self, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _read_json(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        return json.loads(raw) if raw else None

    def do_GET(self) -> None:
        self.fake._record("GET", self.path, None)
        if self.path == "/api/tags":
            self._send_json(200, self.fake.tags_body())
        elif self.path == "/api/version":
            self._send_json(200, {"version": self.fake.version})
        else:
            self._send_json(404, {"error": "404 page not found"})

    def do_POST(self) -> None:
        try:
            body = self._read_json()
        except json.JSONDecodeError:
            self._send_json(400, {"error": "invalid JSON body"})
            return
        self.fake._record("POST", self.path, body)
        if self.path != "/api/chat":
            self._send_json(404, {"error": "404 page not found"})
            return
        if not isinstance(body, dict) or not body.get("model") or not isinstance(body.get("messages"), list):
            self._send_json(400, {"error": "model and messages are required"})
            return
        if body.get("stream", True):
            self._send_json(400, {"error": "the fake ollama supports stream=false only"})
            return
        if not self.fake._has_model(body["model"]):
            self._send_json(404, {"error": f'model "{body["model"]}" not found, try pulling it first'})
            return
        gate = self.fake._gate
        if gate is not None:
            gate.acquire()
        try:
            self._chat(body)
        finally:
            if gate is not None:
                gate.release()

    def _chat(self, body: dict[str, Any]) -> None:
        fake = self.fake
        with fake._lock:
            fake._in_flight += 1
            fake.peak_in_flight = max(fake.peak_in_flight, fake._in_flight)
        try:
            mode = fake._next_chat_fails()
            if mode == "hang":
                fake.wait(3600)
                self.close_connection = True
                return
            started = time.monotonic_ns()
            if fake.delay_s > 0 and fake.wait(fake.delay_s):
                self.close_connection = True
                return
            if mode == "drop":
                self.close_connection = True
                return
            if mode == "error500":
                self._send_json(500, {"error": "llama runner process has terminated: signal: killed"})
                return
            if mode == "busy":
                self._send_json(
                    503, {"error": "server busy, please try again.  maximum pending requests exceeded"}
                )
                return
            content = fake.content_for(body, mode)
            took = time.monotonic_ns() - started
            self._send_json(
                200,
                {
                    "model": body["model"],
                    "created_at": time.strftime("%Y-%m-%dT%H:%M:%S.000000000Z", time.gmtime()),
                    "message": {"role": "assistant", "content": content},
                    "done_reason": "stop",
                    "done": True,
                    "total_duration": took,
                    "load_duration": 0,
                    "prompt_eval_count": sum(len(str(m.get("content", ""))) // 4 for m in body["messages"]),
                    "prompt_eval_duration": took // 2,
                    "eval_count": len(content) // 4,
                    "eval_duration": took // 2,
                },
            )
        finally:
            with fake._lock:
                fake._in_flight -= 1


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="A fake Ollama server (tests and benchmarks).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--model", action="append", dest="models", help="a model it has (repeatable)")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds of model latency per chat")
    parser.add_argument("--max-parallel", type=int, default=0, help="chats served at once (0 = no limit)")
    args = parser.parse_args(argv)
    fake = FakeOllama(
        models=args.models or [DEFAULT_MODEL],
        delay_s=args.delay,
        max_parallel=args.max_parallel,
        host=args.host,
        port=args.port,
    ).start()
    print(fake.url, flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    while not done.wait(0.1):  # a timed wait lets the signal handlers run promptly
        pass
    fake.stop()


if __name__ == "__main__":
    main(sys.argv[1:])
