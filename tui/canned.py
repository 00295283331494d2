"""Fixed sample data for each daemon kind: `pylon-tui --canned buyer|node`, and the snapshot tests.

Everything here is a pure function of the constants below (no clock, no randomness), so a
screenshot of the app fed from it is the same on every machine, every run.
"""

from __future__ import annotations

import hashlib
from typing import Any

from pylon.schemas import rpc
from pylon.tui.source import CannedClient, CannedSource

from pylon.rpc.client import RpcError

CANNED_NOW = 1_750_000_000.0  # a fixed "now" for ages and clock times
RUN_DONE = "a1" * 32
RUN_LIVE = "c3" * 32
RATE_HISTORY = [
    0,
    0,
    12,
    36,
    48,
    60,
    72,
    60,
    84,
    96,
    108,
    96,
    120,
    132,
    120,
    108,
    96,
    120,
    144,
    132,
    156,
    168,
    144,
    132,
    120,
    96,
    108,
    132,
    144,
    156,
    168,
    180,
    168,
    156,
    144,
    132,
    144,
    156,
    168,
    180,
    192,
    180,
    168,
    156,
    168,
    180,
    192,
    204,
]


def pk(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


def job_id(path: str) -> str:
    return hashlib.sha256(f"job:{path}".encode()).hexdigest()


BUYER_PK = pk("buyer")
NODES: list[dict[str, Any]] = [
    # name, state, online, queue, running, completed, failed, heartbeat age, banned
    {
        "name": n,
        "state": s,
        "online": o,
        "queue_depth": q,
        "running": r,
        "completed": c,
        "failed": f,
        "age": a,
        "banned": b,
    }
    for n, s, o, q, r, c, f, a, b in [
        ("n0", "online", True, 2, 4, 412, 3, 1.0, False),
        ("n1", "online", True, 0, 3, 398, 0, 2.0, False),
        ("n2", "online", True, 1, 4, 377, 1, 0.5, False),
        ("n3", "paused", True, 0, 0, 251, 0, 3.0, False),
        ("n4", "draining", True, 3, 2, 190, 7, 1.5, False),
        ("n5", "online", False, 0, 0, 88, 2, 95.0, False),
        ("n6", "online", True, 0, 1, 42, 19, 2.5, True),
        ("mac-studio", "online", True, 0, 2, 520, 1, 1.0, False),
    ]
]
NODE_PK = {n["name"]: pk(n["name"]) for n in NODES}
SERVICE_S = {"n0": 0.41, "n1": 0.38, "n2": 0.52, "n3": 1.27, "n4": 2.9, "mac-studio": 0.19}

RUN_FILES = {
    RUN_DONE: [
        "README.md",
        "setup.py",
        "src/app/__init__.py",
        "src/app/cli.py",
        "src/app/core.py",
        "tests/test_core.py",
    ],
    RUN_LIVE: [
        "pylon/__init__.py",
        "pylon/keys.py",
        "pylon/home.py",
        "pylon/rpc/client.py",
        "pylon/rpc/framing.py",
        "pylon/nostr/nip90.py",
        "pylon/nostr/event.py",
        "daemon/buyer.py",
        "daemon/provider.py",
        "tui/app.py",
    ],
}
LIVE_STATES = [
    "completed",
    "completed",
    "completed",
    "completed",
    "processing",
    "failed",
    "completed",
    "processing",
    "assigned",
    "submitted",
]
PROVIDERS = ["n0", "n1", "n2", "mac-studio"]


def node_infos() -> list[dict[str, Any]]:
    out = []
    for n in NODES:
        out.append(
            {
                "pubkey": NODE_PK[n["name"]],
                "name": n["name"],
                "state": n["state"],
                "online": n["online"],
                "queue_depth": n["queue_depth"],
                "running": n["running"],
                "completed": n["completed"],
                "failed": n["failed"],
                "last_heartbeat": CANNED_NOW - n["age"],
                "executors": ["deterministic", "ollama"] if n["name"] == "mac-studio" else ["deterministic"],
                "models": ["qwen2.5-coder:1.5b"] if n["name"] == "mac-studio" else [],
                "price_msats": 1000,
                "assigned_now": n["running"],
                "slots": max(1, n["running"]) + (1 if n["completed"] > 100 else 0),
                # how long our jobs take there (never measured on a node that ran none of them)
                "service_s": SERVICE_S.get(n["name"]),
                "banned": n["banned"],
            }
        )
    return out


def buyer_jobs() -> list[dict[str, Any]]:
    jobs = []
    for i, path in enumerate(RUN_FILES[RUN_DONE]):
        jobs.append(
            {
                "job_id": job_id(f"done/{path}"),
                "run_id": RUN_DONE,
                "path": path,
                "state": "completed",
                "provider_pubkey": NODE_PK[PROVIDERS[i % 4]],
                "paid": True,
                "error": None,
                "end_to_end": 0.08 + 0.013 * i,
                "attempts": 1,
            }
        )
    for i, (path, state) in enumerate(zip(RUN_FILES[RUN_LIVE], LIVE_STATES, strict=True)):
        jobs.append(
            {
                "job_id": job_id(f"live/{path}"),
                "run_id": RUN_LIVE,
                "path": path,
                "state": state,
                "provider_pubkey": None if state == "submitted" else NODE_PK[PROVIDERS[i % 4]],
                "paid": state == "completed",
                "error": "exec_error" if state == "failed" else None,
                "end_to_end": 0.11 + 0.021 * i if state == "completed" else None,
                "attempts": 2 if state == "failed" or i == 7 else 1,
            }
        )
    jobs.append(
        {
            "job_id": job_id("solo/notes.py"),
            "run_id": None,
            "path": "notes.py",
            "state": "completed",
            "provider_pubkey": NODE_PK["n1"],
            "paid": True,
            "error": None,
            "end_to_end": 0.095,
            "attempts": 1,
        }
    )
    return jobs


def buyer_answers() -> dict[type, Any]:
    jobs = {j["job_id"]: j for j in buyer_jobs()}
    live_counts = {s: LIVE_STATES.count(s) for s in set(LIVE_STATES)}
    status = {
        "name": "buyer",
        "pubkey": BUYER_PK,
        "relays": ["ws://127.0.0.1:7777"],
        "online_nodes": sum(1 for n in NODES if n["online"]),
        "outstanding": 4,
        "completed": 2272,
        "failed": 33,
        "stopped": False,
        "banned": [NODE_PK["n6"]],
        "dropped": {},
        "backups": {"sent": 3, "won": 2, "lost": 1, "moved": 5},
        "slots_declined": 7,
        "reissued": {"provider_offline": 9, "timeout": 2},
    }
    stats = {
        "online_nodes": status["online_nodes"],
        "jobs_completed": 2272,
        "jobs_failed": 33,
        "jobs_total": 2309,
        "success_rate": 2272 / 2305,
        "jobs_per_min": 182.5,
        "p50_e2e_s": 0.142,
        "p95_e2e_s": 0.871,
        "top_providers": [
            {"pubkey": NODE_PK[n], "completed": c, "name": n}
            for n, c in [("mac-studio", 520), ("n0", 412), ("n1", 398), ("n2", 377), ("n3", 251)]
        ],
        "p50_queue_wait_s": 0.004,
        "p50_exec_s": 0.061,
        "p50_publish_s": 0.012,
        "dropped_events": {},
    }
    runs = [
        {
            "run_id": RUN_DONE,
            "repo": "https://github.com/example/app",
            "files": 6,
            "completed": 6,
            "failed": 0,
            "started": CANNED_NOW - 600,
            "finished": CANNED_NOW - 590,
            "out_dir": "/home/op/maps/a1a1",
        },
        {
            "run_id": RUN_LIVE,
            "repo": "/home/op/src/pylon",
            "files": 10,
            "completed": live_counts["completed"],
            "failed": live_counts["failed"],
            "started": CANNED_NOW - 12,
            "finished": None,
            "out_dir": None,
        },
    ]

    def telemetry(req: rpc.JobStatusReq) -> dict[str, Any]:
        j = jobs.get(req.job_id)
        if j is None:
            raise RpcError("not_found", f"unknown job {req.job_id}")
        t0 = CANNED_NOW - 30
        done = j["state"] == "completed"
        return {
            "job_id": j["job_id"],
            "run_id": j["run_id"],
            "path": j["path"],
            "language": "python",
            "state": j["state"],
            "buyer_pubkey": BUYER_PK,
            "provider_pubkey": j["provider_pubkey"],
            "submitted": t0,
            "picked_up": t0 + 0.004,
            "started": t0 + 0.006,
            "finished": t0 + 0.07 if done else None,
            "published": t0 + 0.08 if done else None,
            "paid": t0 + 0.4 if done else None,
            "queue_wait": 0.006,
            "exec_time": 0.064 if done else None,
            "publish_time": 0.01 if done else None,
            "end_to_end": j["end_to_end"],
            "bytes_in": 4821,
            "bytes_out": 1377,
            "result_id": pk(f"result:{j['job_id']}") if done else None,
            "result_hash": None,
            "error": j["error"],
            "attempts": j["attempts"],
            "amount_msats": 1000 if done else 0,
            "is_paid": j["paid"],
            "payment_event_id": None,
            "received": t0 + 0.085 if done else None,
        }

    def trail(req: rpc.TrailReq) -> dict[str, Any]:
        j = jobs.get(req.job_id)
        if j is None or j["state"] != "completed":
            raise RpcError(
                "not_found", f"job {req.job_id[:12]} has no result yet, so no trail past the request"
            )
        prov = j["provider_pubkey"]
        t0 = int(CANNED_NOW) - 30
        chain = [
            ("request", 5931, BUYER_PK, 0),
            ("feedback", 7000, prov, 0),
            ("result", 6931, prov, 0),
            ("payment", 9321, BUYER_PK, 1),
            ("receipt", 7376, prov, 2),
        ]
        return {
            "job_id": req.job_id,
            "verified": True,
            "chain": [
                {
                    "role": role,
                    "kind": kind,
                    "id": pk(f"{role}:{req.job_id}"),
                    "pubkey": who,
                    "created_at": t0 + dt,
                    "valid": True,
                }
                for role, kind, who, dt in chain
            ],
        }

    def provider_stats(req: rpc.StatsReq) -> dict[str, Any]:
        if req.provider is None:
            return stats
        node = next((n for n in NODES if NODE_PK[n["name"]] == req.provider), None)
        if node is None:
            raise RpcError("not_found", "unknown provider")
        return {
            "pubkey": req.provider,
            "name": node["name"],
            "online": node["online"],
            "uptime_s": 5025.0,
            "completed": node["completed"],
            "failed": node["failed"],
            "failure_reasons": {"timeout": node["failed"]} if node["failed"] else {},
            "median_runtime_s": 0.061,
            "median_e2e_s": 0.139,
            "earned_msats": node["completed"] * 1000,
        }

    return {
        rpc.StatusReq: status,
        rpc.StatsReq: provider_stats,
        rpc.NodesReq: {"nodes": node_infos()},
        rpc.RunsReq: {"runs": runs},
        rpc.JobListReq: {"jobs": list(jobs.values())},
        rpc.JobStatusReq: telemetry,
        rpc.TrailReq: trail,
        rpc.CancelReq: {"cancelled": 1},
        rpc.StopAllReq: {"cancelled": 4, "stopped": True},
        rpc.BanReq: lambda r: {"pubkey": r.pubkey, "banned": r.banned},
    }


# --- a node ----------------------------------------------------------------------------------

NODE_NAME = "n0"


def node_status(state: str = "online") -> dict[str, Any]:
    return {
        "name": NODE_NAME,
        "pubkey": NODE_PK[NODE_NAME],
        "state": state,
        "running": 2,
        "queued": 3,
        "completed": 412,
        "failed": 9,
        "executor": "ollama",
        "models": ["qwen2.5-coder:1.5b"],
        "max_concurrency": 4,
        "uptime_s": 5025.0,
        "earned_msats": 412_000,
        "failures": {"timeout": 4, "cancelled": 3, "exec_error": 2},
        "dropped": {"rejected_rate_limited": 5},
    }


def node_jobs() -> list[dict[str, Any]]:
    rows = []
    specs = [
        ("src/app/core.py", "running"),
        ("src/app/cli.py", "running"),
        ("docs/index.md", "queued"),
        ("setup.py", "queued"),
        ("tests/test_core.py", "queued"),
    ]
    specs += [
        (f"lib/module_{i:02d}.py", "failed" if i in (3, 7) else ("aborted" if i == 5 else "completed"))
        for i in range(12)
    ]
    for i, (path, state) in enumerate(specs):
        received = CANNED_NOW - 5 - 7 * i
        started = None if state == "queued" else received + 0.01
        finished = received + 0.09 + 0.01 * i if state in ("completed", "failed", "aborted") else None
        error = {"failed": "timeout", "aborted": "cancelled"}.get(state)
        rows.append(
            {
                "job_id": job_id(f"node/{path}"),
                "buyer": BUYER_PK,
                "path": path,
                "state": state,
                "received": received,
                "started": started,
                "finished": finished,
                "error": error,
                "paid_msats": 1000 if state == "completed" else 0,
            }
        )
    return rows


def node_answers() -> dict[type, Any]:
    return {
        rpc.StatusReq: node_status(),
        rpc.NodeJobsReq: {"jobs": node_jobs()},
        rpc.WalletBalanceReq: {"balance_sats": 412, "mint": "http://127.0.0.1:3338"},
        rpc.PauseReq: node_status("paused"),
        rpc.ResumeReq: node_status("online"),
        rpc.DrainReq: node_status("draining"),
        rpc.AbortJobReq: lambda r: {"job_id": r.job_id, "aborted": True},
    }


def canned_client(kind: str) -> CannedClient:
    if kind == "buyer":
        welcome = rpc.Welcome(version=rpc.RPC_VERSION, daemon="buyer", name="buyer", pubkey=BUYER_PK)
        return CannedClient(welcome, buyer_answers(), [])
    welcome = rpc.Welcome(version=rpc.RPC_VERSION, daemon="node", name=NODE_NAME, pubkey=NODE_PK[NODE_NAME])
    return CannedClient(welcome, node_answers(), [])


def canned_source(kind: str) -> CannedSource:
    return CannedSource(canned_client(kind), label=f"canned {kind} data")
