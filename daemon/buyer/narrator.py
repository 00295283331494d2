"""The LLM reduce step of a repo map: a node with a model writes the overview's narrative.

The map's facts (the deterministic overview: languages, layout, central files, entry points)
go to one live node that announced the `ollama` executor with a model, as a 5931 job with
tasks = ["reduce"]; the result's `summary` is the narrative. With no such node in the swarm
there is nothing to wait for: the narrator answers None at once and the overview stands on
its facts alone.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import anyio
from pylon.schemas.events import REDUCE_TASK
from pylon.schemas.telemetry import JobState

from pylon.logs import get_logger
from pylon.repomap.aggregate import MapFacts, facts_text
from pylon.repomap.prose import MAX_NARRATIVE_CHARS, attribution

if TYPE_CHECKING:
    from pylon.daemon.buyer.daemon import BuyerDaemon

log = get_logger("pylon.narrator")

MODEL_EXECUTOR = "ollama"
# What a small model's context takes (the Ollama executor cuts its prompt at the same size).
MAX_FACTS_CHARS = 24_000
# A 1.5B model writes a few paragraphs in well under a minute on a laptop; past this the map
# is written without a narrative rather than held up.
REDUCE_TIMEOUT_S = 180.0


@dataclass(frozen=True)
class Narrative:
    text: str  # raw: render_overview escapes it
    by: str  # the attribution line, Markdown we wrote


class Narrator:
    """`buyer.narrator`: awaited by the map coordinator with a run's accepted results."""

    def __init__(self, buyer: BuyerDaemon, *, timeout_s: float = REDUCE_TIMEOUT_S) -> None:
        self.buyer = buyer
        self.timeout_s = timeout_s

    def model_node(self) -> str | None:
        """The live node with a model that would finish the narrative soonest (the scheduler's
        forecast: what it holds of ours and how fast it has been), or None."""
        return self.buyer.scheduler.soonest(
            [pubkey for pubkey in self.buyer.registry.nodes if self._has_model(pubkey)]
        )

    def _has_model(self, pubkey: str | None) -> bool:
        e = self.buyer.registry.nodes.get(pubkey or "")
        return bool(e and e.announce and MODEL_EXECUTOR in e.announce.executors and e.announce.models)

    async def __call__(self, map_facts: MapFacts, *, run_id: str) -> Narrative | None:
        node = self.model_node()
        if node is None or not map_facts.repo_map.files:
            return None
        facts = await anyio.to_thread.run_sync(lambda: facts_text(map_facts, MAX_FACTS_CHARS))
        t0 = time.perf_counter()
        sched = self.buyer.scheduler
        job = await sched.submit(
            "overview.md",
            facts,
            language="markdown",
            node=node,
            tasks=(REDUCE_TASK,),
            private=run_id in sched.private_runs,  # the facts name the run's files
        )
        job_id = job.tele.job_id
        with anyio.move_on_after(self.timeout_s):
            await job.done.wait()
        if not job.done.is_set():
            sched.cancel(job_id, None)
            log.warning("narrative_timeout", run_id=run_id, job_id=job_id, timeout_s=self.timeout_s)
            return None
        if job.tele.state != JobState.COMPLETED:
            log.warning(
                "narrative_failed",
                run_id=run_id,
                job_id=job_id,
                error=job.tele.error.value if job.tele.error else job.tele.state.value,
            )
            return None
        # A re-issued attempt keeps the reduce task, so only a model node can answer it; the
        # check still guards the overview against a result that is not a model's prose.
        if not self._has_model(job.tele.provider_pubkey):
            log.warning("narrative_from_node_without_model", run_id=run_id, job_id=job_id)
            return None
        result = await sched.result(job_id)
        # Any node may claim a model: its prose is bounded here, escaped by render_overview and
        # attributed to the node's key (and its self-declared name and model, escaped too).
        narrative = result.summary.strip()[: MAX_NARRATIVE_CHARS * 2]
        node_key = job.tele.provider_pubkey or ""
        entry = self.buyer.registry.nodes.get(node_key)
        name = entry.announce.name if entry is not None and entry.announce is not None else ""
        log.info(
            "narrative_written",
            run_id=run_id,
            job_id=job_id,
            node=(job.tele.provider_pubkey or "")[:12],
            model=result.model,
            chars=len(narrative),
            wall_s=round(time.perf_counter() - t0, 3),
        )
        if not narrative:
            return None
        return Narrative(text=narrative, by=attribution(node=node_key, name=name, model=result.model))


def attach_narrator(buyer: BuyerDaemon) -> None:
    buyer.narrator = Narrator(buyer)
