"""A parse worker process: `python -m pylon.executors.parse_worker`, driven by ParsePool.

It reads length-prefixed msgpack `ParseJob` frames on stdin and answers one `ParseReply` frame
per job on stdout, until stdin closes (its node went away). tree-sitter's query step can run
for a minute on hostile input without ever releasing the GIL or checking a clock; in here
that only costs this process, which the pool kills and replaces.
"""

from __future__ import annotations

import os
import sys

import msgspec

from pylon.schemas.events import FileResult

HEADER_BYTES = 4
MAX_JOB_BYTES = 32 * 1024 * 1024  # text is ≤ 8 MiB (deterministic.MAX_BYTES); a frame beyond is a bug
# Address space a worker may use: a parse of the biggest accepted file needs a few hundred MiB;
# a runaway allocation fails in the worker (MemoryError → exec_error) instead of swapping the node.
MAX_WORKER_AS_BYTES = 4 * 1024 * 1024 * 1024
# A first file, parsed by each worker the pool warms: the Python query compiled and every first
# call of the extractor run before a job pays for them.
WARM_UP_PATH = "warm_up.py"
WARM_UP_TEXT = 'import os\n\n\nclass A:\n    """A."""\n\n    def f(self, x: int) -> int:\n        return x\n'


class ParseJob(msgspec.Struct, frozen=True):
    path: str
    text: str
    language: str | None
    timeout_s: float


class ParseReply(msgspec.Struct, frozen=True):
    result: FileResult | None = None
    code: str = ""  # an ErrorCode value when result is None
    message: str = ""


def _read_exactly(fd: int, n: int) -> bytes | None:
    buf = bytearray()
    while len(buf) < n:
        chunk = os.read(fd, n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _limit_memory() -> None:
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        cap = MAX_WORKER_AS_BYTES if hard == resource.RLIM_INFINITY else min(hard, MAX_WORKER_AS_BYTES)
        if soft == resource.RLIM_INFINITY or soft > cap:
            resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    except (ImportError, ValueError, OSError):  # not Linux/macOS, or not allowed: run unlimited
        pass


def serve(fd_in: int = 0, fd_out: int = 1) -> None:
    from pylon.executors.deterministic import ExecError, extract_file
    from pylon.schemas.errors import ErrorCode

    decoder = msgspec.msgpack.Decoder(ParseJob)
    encoder = msgspec.msgpack.Encoder()
    while True:
        head = _read_exactly(fd_in, HEADER_BYTES)
        if head is None:
            return
        size = int.from_bytes(head, "big")
        if size > MAX_JOB_BYTES:
            return  # out of step with the pool: exit, it starts a fresh worker
        body = _read_exactly(fd_in, size)
        if body is None:
            return
        try:
            job = decoder.decode(body)
            reply = ParseReply(result=extract_file(job.path, job.text, job.language, timeout_s=job.timeout_s))
        except ExecError as exc:
            reply = ParseReply(code=exc.code.value, message=exc.message)
        except MemoryError:
            reply = ParseReply(code=ErrorCode.TOO_LARGE.value, message="parsing ran out of memory")
        except Exception as exc:  # an extractor bug fails one file, not the worker
            reply = ParseReply(code=ErrorCode.EXEC_ERROR.value, message=f"{type(exc).__name__}: {exc}"[:300])
        out = encoder.encode(reply)
        _write_all(fd_out, len(out).to_bytes(HEADER_BYTES, "big") + out)


def main() -> None:
    _limit_memory()
    # Warm the grammars before the first job arrives: the pool starts workers ahead of need
    # (and ParsePool.warm then sends each one WARM_UP_TEXT).
    from pylon.executors import deterministic  # noqa: F401

    # stdout is the reply channel: anything else printing there would corrupt it.
    fd_out = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    serve(0, fd_out)


if __name__ == "__main__":
    main()
