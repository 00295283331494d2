"""How figures read on screen: ages, durations, money, states in colour."""

from __future__ import annotations

import time

from rich.text import Text

STATE_STYLE = {
    # jobs (buyer)
    "submitted": "dim",
    "assigned": "cyan",
    "processing": "bold cyan",
    "completed": "green",
    "failed": "bold red",
    "cancelled": "yellow",
    # jobs (node)
    "queued": "cyan",
    "running": "bold cyan",
    "aborted": "yellow",
    # nodes
    "online": "green",
    "paused": "yellow",
    "draining": "magenta",
    "offline": "red",
    "banned": "bold red",
    "unknown": "dim",
}

STATE_MARK = {
    "completed": "✔",
    "failed": "✖",
    "cancelled": "⊘",
    "aborted": "⊘",
    "processing": "⟳",
    "running": "⟳",
    "assigned": "→",
    "queued": "…",
    "submitted": "·",
}


def state_text(state: str | None, *, mark: bool = False) -> Text:
    s = state or "unknown"
    label = f"{STATE_MARK.get(s, ' ')} {s}" if mark else s
    return Text(label, style=STATE_STYLE.get(s, ""))


def age(ts: float | None, now: float) -> str:
    """'3s ago', '4m ago', … or '-' when never."""
    if ts is None:
        return "-"
    d = max(0.0, now - ts)
    if d < 60:
        return f"{d:.0f}s ago"
    if d < 3600:
        return f"{d // 60:.0f}m ago"
    if d < 86400:
        return f"{d // 3600:.0f}h ago"
    return f"{d // 86400:.0f}d ago"


def secs(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 1:
        return f"{value * 1000:.0f}ms"
    if value < 120:
        return f"{value:.2f}s"
    return f"{value / 60:.1f}m"


def uptime(value: float | None) -> str:
    if value is None:
        return "-"
    v = int(value)
    h, rem = divmod(v, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


def sats(msats: int | None) -> str:
    if not msats:
        return "0 sat"
    return f"{msats / 1000:,.3f} sat".replace(".000 ", " ")


def pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def clock_time(ts: float | None) -> str:
    return "-" if ts is None else time.strftime("%H:%M:%S", time.localtime(ts))
