"""A node's side of `pylon ask`: the `ask` and `ask_reduce` tasks, on either executor.

The deterministic answer always comes first (exact, cheap). A node whose executor has a model
(Ollama) then asks the model, with structured output, for what only a reader gives: whether the
file is relevant, the answer in a few lines, the cited line ranges, the follow-ups. The reply is
decoded and validated like the summary is: cited lines must be lines the model was shown,
follow-ups must be names that occur in them; an invalid reply is retried once with the error
shown, and a second one fails the job.
"""

from __future__ import annotations

import functools
from typing import Any

import msgspec

from pylon.ask.deterministic import answer_query, rank_evidence, reduce_answers
from pylon.ask.text import identifiers, window_lines
from pylon.executors.deterministic import ExecError
from pylon.executors.version import deterministic_version
from pylon.logs import get_logger
from pylon.nostr.nip90 import sha256_hex
from pylon.schemas.ask import (
    ASK_REDUCE_TASK,
    MAX_ANSWER_CHARS,
    MAX_CITATIONS,
    MAX_CLAIMS,
    MAX_FOLLOW_UPS,
    MAX_QUESTION_CHARS,
    MAX_TERMS,
    MAX_WINDOW_LINES,
    MAX_WINDOWS,
    AskAnswer,
    AskModelAnswer,
    AskModelReduce,
    AskQuery,
    AskReduceInput,
    Claim,
    Span,
)
from pylon.schemas.errors import ErrorCode
from pylon.schemas.events import FileResult, JobRequest
from pylon.untrusted import DECODE_ERRORS

log = get_logger(__name__)

MAX_REDUCE_ANSWERS = 200
MAX_PROMPT_EVIDENCE = 40

SYSTEM_ASK = (
    "You help answer a question about a code repository by reading parts of ONE file. The lines "
    "are numbered. Reply with JSON only, with exactly these fields: relevant (true if these lines "
    "help answer the question), answer (at most three sentences, only what these lines show), "
    "citations (the line ranges that back the answer, as {start, end} with numbers shown), "
    "follow_ups (up to five names of functions, classes or variables in these lines that should be "
    "looked up next to answer the question; names exactly as written). Do not invent names."
)
SYSTEM_ASK_REDUCE = (
    "You answer a question about a code repository from the findings of many small readers, each "
    "about one file. Reply with JSON only, with exactly these fields: answer (two to five sentences "
    "answering the question), claims (each a statement with the ONE file path and line range that "
    "backs it, as {claim, path, start, end}, copied from the findings). Use only the findings."
)

_query_decoder = msgspec.json.Decoder(AskQuery)
_reduce_decoder = msgspec.json.Decoder(AskReduceInput)


def _bad(message: str) -> ExecError:
    return ExecError(ErrorCode.BAD_INPUT, message)


def decode_query(text: str) -> AskQuery:
    try:
        q = _query_decoder.decode(text.encode())
    except DECODE_ERRORS as exc:  # total (pylon.untrusted)
        raise _bad(f"not an ask sub-query: {exc}") from exc
    if not q.question.strip() or len(q.question) > MAX_QUESTION_CHARS:
        raise _bad("the question is empty or too long")
    if len(q.terms) > MAX_TERMS or len(q.windows) > MAX_WINDOWS:
        raise _bad("too many terms or windows")
    if sum(len(w.lines) for w in q.windows) > MAX_WINDOW_LINES:
        raise _bad(f"more than {MAX_WINDOW_LINES} lines of windows")
    return q


def decode_reduce(text: str) -> AskReduceInput:
    try:
        inp = _reduce_decoder.decode(text.encode())
    except DECODE_ERRORS as exc:  # total (pylon.untrusted)
        raise _bad(f"not an ask reduce input: {exc}") from exc
    if (
        not inp.question.strip()
        or len(inp.question) > MAX_QUESTION_CHARS
        or len(inp.answers) > MAX_REDUCE_ANSWERS
    ):
        raise _bad("the question is empty or too long, or too many answers")
    return inp


def _model_of(executor: Any) -> Any:
    """The executor's model interface (Ollama's `_chat`), or None for a deterministic node."""
    if getattr(executor, "name", "") != "ollama" or not hasattr(executor, "_chat"):
        return None
    return executor


async def run_ask_task(executor: Any, req: JobRequest, text: str) -> FileResult:
    """The node's entry point for a request whose tasks name `ask` or `ask_reduce`."""
    model = _model_of(executor)
    if ASK_REDUCE_TASK in req.tasks:
        inp = decode_reduce(text)
        answer = reduce_answers(inp)
        if model is not None:
            answer = await model_reduce(model, inp, answer)
        path, lines = req.path or "answer.md", 0
    else:
        q = decode_query(text)
        answer = answer_query(q)
        if model is not None:
            answer = await model_answer(model, q, answer)
        path, lines = q.path, max((w.start + len(w.lines) - 1 for w in q.windows), default=0)
    data = text.encode()
    return FileResult(
        path=path,
        language=req.language or "text",
        lines=lines,
        symbols=[],
        imports=[],
        summary=answer.answer[:MAX_ANSWER_CHARS],
        executor=getattr(executor, "name", "deterministic"),
        model=str(getattr(executor, "model", "")) if model is not None else "",
        input_sha256=sha256_hex(data),
        bytes_in=len(data),
        # The ask rules live in pylon.ask; a deterministic answer is comparable like a file's.
        executor_version=f"ask1-{deterministic_version()}" if model is None else "",
        ask=answer,
    )


# --- the model's part -------------------------------------------------------------------------


@functools.cache
def _schema(struct: type) -> dict[str, Any]:
    # Ollama's schema-to-grammar step wants the object inline; nested Structs stay under $defs.
    full = msgspec.json.schema(struct)
    top = dict(full["$defs"][struct.__name__])
    if len(full["$defs"]) > 1:
        top["$defs"] = {k: v for k, v in full["$defs"].items() if k != struct.__name__}
    return top


def schema_of(struct: type) -> dict[str, Any]:
    return msgspec.json.decode(msgspec.json.encode(_schema(struct)))


async def _ask_model(model: Any, system: str, prompt: str, struct: type, check: Any, what: str) -> Any:
    messages = [{"role": "system", "content": system}, {"role": "user", "content": prompt}]
    fmt = schema_of(struct)
    content = await model._chat(messages, fmt=fmt)
    try:
        return check(msgspec.json.decode(content.strip().encode(), type=struct))
    except DECODE_ERRORS as first:
        log.info("ollama_invalid_ask_reply", what=what, error=str(first))
        messages += [
            {"role": "assistant", "content": content[:2000]},
            {"role": "user", "content": f"That reply was not valid ({first}). Reply again with JSON only."},
        ]
    content = await model._chat(messages, fmt=fmt)
    try:
        return check(msgspec.json.decode(content.strip().encode(), type=struct))
    except DECODE_ERRORS as second:
        raise ExecError(
            ErrorCode.EXEC_ERROR, f"{model.model} returned an invalid {what} twice: {second}"
        ) from second


def _numbered(q: AskQuery, max_chars: int) -> tuple[str, set[int]]:
    """The windows as numbered lines, cut to what the model's context holds; and their numbers."""
    out: list[str] = []
    shown: set[int] = set()
    used = 0
    for w in q.windows:
        for k, line in enumerate(w.lines):
            text = f"{w.start + k:>5} | {line[:300]}"
            if k == 0:
                text = "…\n" + text
            used += len(text) + 1
            if used > max_chars:
                out.append("(the rest of the lines are cut here)")
                return "\n".join(out), shown
            out.append(text)
            shown.add(w.start + k)
    return "\n".join(out), shown


async def model_answer(model: Any, q: AskQuery, facts: AskAnswer) -> AskAnswer:
    prompt_lines, numbers = _numbered(q, int(getattr(model, "max_chars", 12_000)))
    shown = {n: t for n, t in window_lines(q.windows).items() if n in numbers}
    names = {n for line in shown.values() for n in identifiers(line)}
    hints = "\n".join(f"- line {e.line}: {e.kind} of {e.symbol}" for e in facts.evidence[:12]) or "(none)"
    prompt = (
        f"Question: {q.question}\nFile: {q.path} ({q.language or 'text'})\n"
        + (f"Followed up from: {', '.join(q.focus)}\n" if q.focus else "")
        + f"Lines matching the question's terms ({', '.join(q.terms)}):\n{hints}\n\n{prompt_lines}"
    )

    def check(a: AskModelAnswer) -> AskModelAnswer:
        if a.relevant and not a.answer.strip():
            raise ValueError("a relevant reply needs an answer")
        return a

    reply: AskModelAnswer = await _ask_model(model, SYSTEM_ASK, prompt, AskModelAnswer, check, "ask reply")
    # Cited ranges the model was not shown, and follow-ups that are not in the lines, are dropped.
    citations = [
        Span(path=q.path, start=c.start, end=c.end)
        for c in reply.citations
        if 1 <= c.start <= c.end and c.start in shown and c.end in shown
    ][:MAX_CITATIONS]
    follow = [
        f for f in dict.fromkeys(f.strip() for f in reply.follow_ups) if f in names and f not in q.terms
    ]
    return msgspec.structs.replace(
        facts,
        relevant=reply.relevant,
        answer=" ".join(reply.answer.split())[:MAX_ANSWER_CHARS] or facts.answer,
        citations=citations or (facts.citations if reply.relevant else []),
        follow_ups=follow[:MAX_FOLLOW_UPS],
        mode="model",
    )


def _evidence_spans(inp: AskReduceInput) -> dict[str, list[tuple[int, int]]]:
    spans: dict[str, list[tuple[int, int]]] = {}
    for a in inp.answers:
        for s in a.citations:
            spans.setdefault(s.path, []).append((s.start, s.end))
        for e in a.evidence:
            spans.setdefault(e.path, []).append((e.line, e.end))
    return spans


async def model_reduce(model: Any, inp: AskReduceInput, facts: AskAnswer) -> AskAnswer:
    lines = []
    for a in inp.answers:
        if not a.answer:
            continue
        cited = ", ".join(f"{s.path}:{s.start}-{s.end}" for s in a.citations[:6])
        lines.append(f"- [{a.path}] {a.answer}" + (f" (lines: {cited})" if cited else ""))
    for _, e in rank_evidence(inp)[:MAX_PROMPT_EVIDENCE]:
        lines.append(f"- [{e.path}:{e.line}-{e.end}] {e.kind} of {e.symbol}: {e.text[:160]}")
    prompt = f"Question: {inp.question}\n\nFindings:\n" + "\n".join(lines)
    allowed = _evidence_spans(inp)

    def backed(c: Any) -> bool:
        return any(a <= c.start <= c.end <= b for a, b in allowed.get(c.path, []))

    def check(r: AskModelReduce) -> AskModelReduce:
        if not r.answer.strip():
            raise ValueError("the answer must not be blank")
        return r

    reply: AskModelReduce = await _ask_model(
        model, SYSTEM_ASK_REDUCE, prompt, AskModelReduce, check, "reduce"
    )
    # A claim must cite lines some sub-answer stood on: what a reader found, not what the model wrote.
    claims = [
        Claim(text=c.claim.strip(), citations=[Span(path=c.path, start=c.start, end=c.end)])
        for c in reply.claims
        if c.claim.strip() and backed(c)
    ][:MAX_CLAIMS]
    return msgspec.structs.replace(
        facts,
        answer=reply.answer.strip()[: MAX_ANSWER_CHARS * 2],
        claims=claims or facts.claims,
        mode="model" if claims else "mixed",  # the model's prose, the claims from the evidence
    )
