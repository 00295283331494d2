"""The CLI's id resolution: what a person typed, made the one full id the daemons know.

Candidates come from the buyer over its socket (its jobs, runs and nodes); the matching itself
is `pylon.ids.resolve_prefix`, one rule for every command. A full 64-hex id goes through as it
is, without asking, so scripts that pass full ids cost nothing extra.
"""

from __future__ import annotations

from typing import Any

from pylon.cli.output import fail
from pylon.cli.rpc_call import call
from pylon.home import buyer_socket
from pylon.ids import IdError, is_full_id, normalize, resolve_prefix
from pylon.schemas import rpc

_ALL = 10_000_000


def _resolve(typed: str, candidates: list[str], what: str) -> str:
    try:
        return resolve_prefix(typed, candidates, what)
    except IdError as exc:
        fail(f"{exc} ({exc.code})")


def job_id(typed: str) -> str:
    if is_full_id(normalize(typed)):
        return normalize(typed)
    jobs = call(buyer_socket(), rpc.JobListReq(limit=_ALL), timeout=120)["jobs"]
    return _resolve(typed, [j["job_id"] for j in jobs], "job")


def run_id(typed: str) -> str:
    return run(typed)["run_id"]


def run(typed: str) -> dict[str, Any]:
    runs = call(buyer_socket(), rpc.RunsReq(), timeout=60)["runs"]
    full = _resolve(typed, [r["run_id"] for r in runs], "run")
    return next(r for r in runs if r["run_id"] == full)


def provider(typed: str) -> str:
    """A node's name (as `pylon up` names them: n0, n1, …) or a pubkey prefix; the pubkey."""
    nodes = call(buyer_socket(), rpc.NodesReq())["nodes"]
    by_name: dict[str, set[str]] = {}
    for n in nodes:
        if n.get("name"):
            by_name.setdefault(n["name"], set()).add(n["pubkey"])
    name = typed.strip()
    if name in by_name:
        if len(by_name[name]) > 1:
            fail(f"{len(by_name[name])} nodes are named {name}; give a pubkey prefix instead")
        return next(iter(by_name[name]))
    known = {n["pubkey"] for n in nodes}
    if not is_full_id(normalize(typed)):
        # Providers that did jobs and have gone since still have figures.
        jobs = call(buyer_socket(), rpc.JobListReq(limit=_ALL), timeout=120)["jobs"]
        known |= {j["provider_pubkey"] for j in jobs if j.get("provider_pubkey")}
    try:
        return resolve_prefix(typed, known, "provider")
    except IdError as exc:
        names = ", ".join(sorted(by_name)[:8])
        hint = f"; nodes known by name: {names}" if names else ""
        fail(f"{exc}{hint} ({exc.code})")
