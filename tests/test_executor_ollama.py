"""The Ollama executor, tested against a fake Ollama server.

Ollama cannot be installed on this machine and no model weights can be downloaded, so these
tests run the real executor (the real `ollama` python client, real HTTP on loopback) against
`tests/ollama_fake.py`: a small HTTP server that speaks the parts of Ollama's API the executor
uses (`GET /api/tags`, non-streaming `POST /api/chat` with `format` = a JSON schema) with
Ollama's response shapes and errors (404 for a model that is not pulled, 5xx, 503 busy,
dropped connections, no answer), and records every request it receives. Symbols and imports
come from the real deterministic extractor.
"""

from __future__ import annotations

import socket

import msgspec
import pytest
from ollama_fake import FakeOllama
from pylon.schemas.errors import ErrorCode
from pylon.schemas.events import FileResult, Symbol
from pylon.schemas.llm import OllamaSummary

from pylon.executors.ollama_executor import OllamaExecutor, compose_summary, summary_schema

pytestmark = pytest.mark.anyio

MODEL = "qwen2.5-coder:1.5b"
PATH = "app/greeter.py"
SOURCE = '''"""Greets people."""
import os
from pathlib import Path


class Greeter:
    def greet(self, name: str) -> str:
        return f"hi {name}"


def main() -> None:
    print(Greeter().greet(os.getlogin()), Path.cwd())
'''
REPLY = {
    "purpose": "Command-line greeter",
    "summary": "Defines a Greeter class whose greet method formats a greeting; main prints one.",
    "key_symbols": ["Greeter", "main", "InventedByTheModel"],
}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _exec_error(executor: OllamaExecutor, code: ErrorCode) -> Exception:
    from pylon.executors.deterministic import ExecError

    with pytest.raises(ExecError) as info:
        await executor.run(PATH, SOURCE, "python")
    assert info.value.code == code, info.value.message
    return info.value


async def test_probe_lists_the_models_present() -> None:
    with FakeOllama(models=[MODEL, "llama3"]) as fake:
        async with OllamaExecutor(fake.url, MODEL) as ex:
            assert ex.models() == []  # nothing known before the first probe
            assert await ex.probe() == [MODEL, "llama3:latest"]
            assert ex.models() == [MODEL, "llama3:latest"]
            assert ex.has_model()
        assert [(r.method, r.path) for r in fake.requests] == [("GET", "/api/tags")]


async def test_probe_without_the_model() -> None:
    with FakeOllama(models=["llama3:8b"]) as fake:
        async with OllamaExecutor(fake.url, MODEL) as ex:
            assert await ex.probe() == ["llama3:8b"]
            assert not ex.has_model()


async def test_happy_path_returns_a_validated_summary_and_sends_the_schema() -> None:
    from pylon.executors.deterministic import extract_file

    expected = extract_file(PATH, SOURCE, "python")
    with FakeOllama(reply=REPLY) as fake:
        async with OllamaExecutor(fake.url, MODEL) as ex:
            result = await ex.run(PATH, SOURCE, "python")

    assert isinstance(result, FileResult)
    assert (result.executor, result.model) == ("ollama", MODEL)
    assert (result.path, result.language) == (PATH, "python")
    # symbols and imports are the deterministic extractor's, untouched by the model
    assert result.symbols == expected.symbols
    assert result.imports == expected.imports
    assert "Greeter" in {s.name for s in result.symbols}
    assert result.summary.startswith("Command-line greeter. Defines a Greeter class")
    assert "Key symbols: Greeter, main." in result.summary
    assert "InventedByTheModel" not in result.summary

    [request] = fake.chat_requests
    assert request["model"] == MODEL
    assert request["stream"] is False
    assert request["format"] == summary_schema()
    assert request["format"]["type"] == "object"
    assert set(request["format"]["required"]) == {"purpose", "summary", "key_symbols"}
    assert request["options"]["temperature"] == 0
    prompt = request["messages"][-1]["content"]
    assert PATH in prompt and "class Greeter" in prompt and "Greeter" in prompt.split("Definitions:")[1]


async def test_the_schema_is_msgspecs_schema_of_the_struct() -> None:
    full = msgspec.json.schema(OllamaSummary)
    assert summary_schema() == full["$defs"]["OllamaSummary"]
    assert "$ref" not in msgspec.json.encode(summary_schema()).decode()


async def test_missing_model_is_model_missing() -> None:
    with FakeOllama(models=["llama3:8b"]) as fake:
        async with OllamaExecutor(fake.url, MODEL) as ex:
            err = await _exec_error(ex, ErrorCode.MODEL_MISSING)
    assert f'model "{MODEL}" not found' in str(err.message)
    assert f"ollama pull {MODEL}" in str(err.message)


async def test_server_down_probe_is_empty_and_run_is_provider_offline() -> None:
    async with OllamaExecutor(f"http://127.0.0.1:{_dead_port()}", MODEL) as ex:
        assert await ex.probe() == []
        assert ex.models() == []
        await _exec_error(ex, ErrorCode.PROVIDER_OFFLINE)


async def test_server_that_went_away() -> None:
    fake = FakeOllama().start()
    async with OllamaExecutor(fake.url, MODEL) as ex:
        assert await ex.probe() == [MODEL]
        fake.stop()
        assert await ex.probe() == []
        await _exec_error(ex, ErrorCode.PROVIDER_OFFLINE)


async def test_one_invalid_reply_is_retried() -> None:
    with FakeOllama(reply=REPLY, fail="garbage", fail_times=1) as fake:
        async with OllamaExecutor(fake.url, MODEL) as ex:
            result = await ex.run(PATH, SOURCE, "python")
    assert result.summary.startswith("Command-line greeter.")
    first, second = fake.chat_requests
    # the retry shows the model its bad reply and asks again, with the same schema
    assert second["format"] == first["format"] == summary_schema()
    assert second["messages"][: len(first["messages"])] == first["messages"]
    assert second["messages"][-2]["role"] == "assistant"
    assert "not valid" in second["messages"][-1]["content"]


@pytest.mark.parametrize("mode", ["garbage", "wrong_schema"])
async def test_invalid_twice_is_exec_error_after_exactly_one_retry(mode: str) -> None:
    with FakeOllama(fail=mode) as fake:
        async with OllamaExecutor(fake.url, MODEL) as ex:
            err = await _exec_error(ex, ErrorCode.EXEC_ERROR)
    assert "invalid JSON twice" in str(err.message)
    assert len(fake.chat_requests) == 2


async def test_blank_summary_counts_as_invalid() -> None:
    blank = {"purpose": "x", "summary": "   ", "key_symbols": []}
    with FakeOllama(reply=blank) as fake:
        async with OllamaExecutor(fake.url, MODEL) as ex:
            await _exec_error(ex, ErrorCode.EXEC_ERROR)
    assert len(fake.chat_requests) == 2


@pytest.mark.parametrize(
    ("mode", "code"),
    [
        ("error500", ErrorCode.EXEC_ERROR),
        ("busy", ErrorCode.RATE_LIMITED),
        ("drop", ErrorCode.PROVIDER_OFFLINE),
    ],
)
async def test_server_errors_map_to_codes(mode: str, code: ErrorCode) -> None:
    with FakeOllama(fail=mode) as fake:
        async with OllamaExecutor(fake.url, MODEL) as ex:
            await _exec_error(ex, code)
        assert len(fake.chat_requests) >= 1


async def test_a_model_that_does_not_answer_is_a_timeout() -> None:
    with FakeOllama(fail="hang") as fake:
        async with OllamaExecutor(fake.url, MODEL, timeout_s=0.5) as ex:
            err = await _exec_error(ex, ErrorCode.TIMEOUT)
    assert "0.5 s" in str(err.message)


async def test_runs_are_concurrent() -> None:
    import anyio

    with FakeOllama(reply=REPLY, delay_s=0.5) as fake:
        async with OllamaExecutor(fake.url, MODEL) as ex, anyio.create_task_group() as tg:
            for i in range(4):
                tg.start_soon(ex.run, f"f{i}.py", SOURCE, "python")
    assert len(fake.chat_requests) == 4
    assert fake.peak_in_flight >= 2  # the executor does not serialise calls to Ollama


def test_the_fake_counts_a_client_that_hangs_up_mid_chat_without_a_traceback(
    capfd: pytest.CaptureFixture[str],
) -> None:
    import struct
    import time

    with FakeOllama(reply=REPLY, delay_s=0.5) as fake:  # the hang-up comes well before the answer
        body = b'{"model": "%s", "messages": [{"role": "user", "content": "hi"}]}' % MODEL.encode()
        with socket.create_connection(("127.0.0.1", fake.port)) as s:
            s.sendall(
                b"POST /api/chat HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
            )
            deadline = time.monotonic() + 5
            while not fake.chat_requests and time.monotonic() < deadline:
                time.sleep(0.005)
            assert fake.chat_requests, "the fake never read the chat"
            # A reset, as a process killed -9 leaves it: the fake's answer then fails to write.
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        deadline = time.monotonic() + 5
        while fake.clients_gone == 0 and time.monotonic() < deadline:
            time.sleep(0.005)
        assert fake.clients_gone == 1
    assert "Traceback" not in capfd.readouterr().err


async def test_reduce_writes_the_overview_without_a_schema() -> None:
    facts = "# Facts\n- app/greeter.py: Command-line greeter (Greeter, main)\n"
    with FakeOllama(reduce_reply="  Pylon greets people.\n\nStart at app/greeter.py.  ") as fake:
        async with OllamaExecutor(fake.url, MODEL) as ex:
            text = await ex.reduce(facts)
    assert text == "Pylon greets people.\n\nStart at app/greeter.py."
    [request] = fake.chat_requests
    assert "format" not in request or request["format"] is None
    content = request["messages"][-1]["content"]  # the facts, fenced as data (issue 10 item 12)
    assert content.startswith("<<<FACTS-") and facts.strip() in content


async def test_reduce_rejects_empty_facts_and_empty_answers() -> None:
    from pylon.executors.deterministic import ExecError

    with FakeOllama(reduce_reply="   ") as fake:
        async with OllamaExecutor(fake.url, MODEL) as ex:
            with pytest.raises(ExecError) as info:
                await ex.reduce("  \n")
            assert info.value.code == ErrorCode.BAD_INPUT
            assert fake.chat_requests == []  # nothing asked of the model
            with pytest.raises(ExecError) as info:
                await ex.reduce("- a.py: something")
            assert info.value.code == ErrorCode.EXEC_ERROR


def test_compose_summary_keeps_only_real_symbols_and_caps_length() -> None:
    facts = FileResult(
        path="a.py", language="python", lines=1, symbols=[Symbol("f", "function", 1)], imports=[], summary=""
    )
    answer = OllamaSummary(
        purpose="Does f", summary="It " + "very " * 400 + "much.", key_symbols=["f", "g", "f"]
    )
    text = compose_summary(answer, facts)
    assert text.startswith("Does f. It very")
    assert len(text) <= 1200 and text.endswith("…")
    short = compose_summary(OllamaSummary("P.", "S.", ["g"]), facts)
    assert short == "P. S."
    assert compose_summary(OllamaSummary("P", "S.", ["f", "f"]), facts) == "P. S. Key symbols: f."
    method = msgspec.structs.replace(facts, symbols=[Symbol("run", "method", 2, parent="Job")])
    qualified = compose_summary(OllamaSummary("P", "S.", ["Job.run", "Job"]), method)
    assert qualified == "P. S. Key symbols: Job.run."
