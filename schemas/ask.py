"""Structs of `pylon ask`: a question answered by sub-queries over a repo map (issue 13).

A sub-query is an ordinary 5931 job whose `tasks` param is `ask` and whose input text is an
`AskQuery` (JSON): the question plus only the windows of one file that bear on it. The node's
answer rides in the result's `FileResult.ask`. The final reduce is a job with `tasks=ask_reduce`
whose input is an `AskReduceInput`. `AskModelAnswer` / `AskModelReduce` are what a local model
is asked to return (Ollama structured output); the node validates them before they leave it.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

ASK_TASK = "ask"
ASK_REDUCE_TASK = "ask_reduce"

# Sizes a node accepts and a buyer sends: a sub-query is small by construction.
MAX_QUESTION_CHARS = 2_000
MAX_TERMS = 16
MAX_WINDOWS = 24
MAX_WINDOW_LINES = 400  # lines over all windows of one sub-query
MAX_FOLLOW_UPS = 8
MAX_EVIDENCE = 24
MAX_CITATIONS = 16
MAX_ANSWER_CHARS = 1_200
MAX_CLAIMS = 24

Line = Annotated[int, msgspec.Meta(ge=1)]


class Window(msgspec.Struct):
    """Consecutive lines of the file, the first one numbered `start` (1-based)."""

    start: Line
    lines: list[str]


class DefinitionHint(msgspec.Struct):
    """A definition the map knows of in this file (tree-sitter's, from the map run)."""

    name: str
    kind: str
    line: Line


class AskQuery(msgspec.Struct, kw_only=True):
    """The input of one `ask` sub-query."""

    question: str
    terms: list[str]  # identifiers and words the question is about
    path: str
    language: str = ""
    windows: list[Window]
    definitions: list[DefinitionHint] = []
    depth: int = 0
    focus: list[str] = []  # for a follow-up: the symbols that led here


class Span(msgspec.Struct):
    """A cited line range of one file (inclusive)."""

    path: str
    start: Line
    end: Line


class Evidence(msgspec.Struct, kw_only=True):
    path: str
    line: Line
    end: Line
    kind: str  # "definition" | "use" | "mention"
    symbol: str  # the term it is about
    text: str  # the line itself, stripped
    score: float = 0.0


class Claim(msgspec.Struct):
    text: str
    citations: list[Span]


class AskAnswer(msgspec.Struct, kw_only=True):
    """A node's answer to a sub-query (`FileResult.ask`), or to the reduce (with `claims`)."""

    relevant: bool
    answer: str = ""
    citations: list[Span] = []
    evidence: list[Evidence] = []
    follow_ups: list[str] = []
    claims: list[Claim] = []
    mode: str = "deterministic"  # "deterministic" | "model"


class SubAnswerDigest(msgspec.Struct, kw_only=True):
    """One sub-answer as the reduce sees it."""

    path: str
    depth: int
    answer: str
    citations: list[Span] = []
    evidence: list[Evidence] = []


class AskReduceInput(msgspec.Struct, kw_only=True):
    question: str
    terms: list[str]
    answers: list[SubAnswerDigest]


# --- what a model returns (every field required: small models fill those in more reliably) ----


class ModelCitation(msgspec.Struct, forbid_unknown_fields=False):
    start: int
    end: int


class AskModelAnswer(msgspec.Struct, forbid_unknown_fields=False):
    relevant: bool
    answer: str
    citations: list[ModelCitation]
    follow_ups: list[str]


class ModelClaim(msgspec.Struct, forbid_unknown_fields=False):
    claim: str
    path: str
    start: int
    end: int


class AskModelReduce(msgspec.Struct, forbid_unknown_fields=False):
    answer: str
    claims: list[ModelClaim]


# --- the ask tree (ask.json) and its RPC ------------------------------------------------------


class AskNode(msgspec.Struct, kw_only=True):
    """One sub-call of an ask: ask.json's tree is these, linked by `parent`."""

    id: int
    parent: int | None
    depth: int
    path: str
    focus: list[str]
    status: str  # pending | assigned | processing | completed | failed | skipped_{budget,depth,fanout}
    job_id: str | None = None
    node: str | None = None  # provider pubkey
    cost_sats: int = 0
    relevant: bool | None = None
    mode: str = ""
    error: str | None = None
    follow_ups: list[str] = []
    wall_s: float | None = None


class AskProgress(msgspec.Struct, kw_only=True):
    ask_id: str
    question: str
    depth: int  # the round now running
    nodes: list[AskNode]
    spent_sats: int
    budget_sats: int | None
    done: bool = False


class AskList(msgspec.Struct):
    """The reply to AsksReq: the asks the buyer remembers, newest last."""

    asks: list[AskProgress]


class AskSummary(msgspec.Struct, kw_only=True):
    ask_id: str
    question: str
    mode: str  # which executors answered: "model", "deterministic" or "mixed"
    sub_calls: int
    completed: int
    failed: int
    skipped: int
    rounds: int
    spent_sats: int
    budget_sats: int | None
    claims: int
    citations_dropped: int
    wall_s: float
    artifacts: dict[str, str]
    stopped_by: list[str] = []  # "depth" | "budget" | "fanout" | "no_follow_ups"
