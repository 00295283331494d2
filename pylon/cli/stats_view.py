"""`pylon stats` for a person: one figure a line, `label: value unit`, so nothing wraps between
a label and its value when piped, and every figure says what it is a figure of."""

from __future__ import annotations

import time
from typing import Any

from pylon.cli.output import short, stdout


def _s(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f} s"


def _ago(t: float | None, now: float) -> str:
    if t is None:
        return "never"
    d = max(0.0, now - t)
    if d < 90:
        return f"{d:.0f} s ago"
    if d < 5400:
        return f"{d / 60:.0f} min ago"
    return f"{d / 3600:.1f} h ago"


def _duration(v: float | None) -> str:
    if v is None:
        return "-"
    if v < 120:
        return f"{v:.0f} s"
    if v < 7200:
        return f"{v / 60:.1f} min"
    return f"{v / 3600:.1f} h"


def _lines(rows: list[tuple[str, str]]) -> None:
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        stdout.print(f"{k + ':':<{width + 1}} {v}", markup=False, highlight=False, soft_wrap=True)


def node_counts(nodes: list[dict[str, Any]]) -> str:
    """'3 (2 serving, 1 paused)': heartbeating nodes, and what they are doing."""
    online = [n for n in nodes if n.get("online")]
    states: dict[str, int] = {}
    for n in online:
        states[n.get("state", "unknown")] = states.get(n.get("state", "unknown"), 0) + 1
    serving = states.pop("online", 0)
    parts = [f"{serving} serving"] + [f"{v} {k}" for k, v in sorted(states.items())]
    return f"{len(online)} ({', '.join(parts)})"


def print_global(res: dict[str, Any], nodes: list[dict[str, Any]] | None) -> None:
    now = time.time()
    recent_min = res.get("recent_s", 300.0) / 60
    per_min = res.get("jobs_recent", 0) / recent_min
    last = _ago(res.get("last_completed_at"), now)
    rows = [
        ("nodes online", node_counts(nodes) if nodes is not None else str(res["online_nodes"])),
        ("jobs completed", f"{res['jobs_completed']:,}"),
        ("jobs failed", f"{res['jobs_failed']:,}"),
        ("success rate", f"{res['success_rate'] * 100:.1f} % of finished jobs"),
        (
            f"jobs/min, last {recent_min:g} min",
            f"{per_min:.1f} (last job done {last})",
        ),
        ("jobs/min while busy", f"{res['jobs_per_min']:.1f} (first job submitted to last done)"),
        ("end to end p50", _s(res["p50_e2e_s"])),
        ("end to end p95", _s(res["p95_e2e_s"])),
    ]
    _lines(rows)
    if res["top_providers"]:
        stdout.print("top providers (jobs completed):", highlight=False)
        for p in res["top_providers"]:
            who = p.get("name") or short(p["pubkey"])
            stdout.print(f"  {who} {short(p['pubkey'])}: {p['completed']:,}", markup=False, highlight=False)


def print_provider(res: dict[str, Any]) -> None:
    rows = [
        ("provider", f"{res.get('name') or '-'} {res['pubkey']}"),
        ("online", "yes" if res["online"] else "no"),
        ("uptime", _duration(res.get("uptime_s"))),
        ("jobs completed", f"{res['completed']:,}"),
        ("jobs failed", f"{res['failed']:,}"),
        ("median run time", _s(res["median_runtime_s"])),
    ]
    _lines(rows)
    for reason, n in res["failure_reasons"].items():
        stdout.print(f"  failed, {reason}: {n}", markup=False, highlight=False)
