"""The runs: each map run a tree of its subtasks (grouped by directory) that fills in as results arrive.

A run's subtasks are only turned into tree nodes once the run is expanded (the newest run
opens by itself), so a buyer with many big runs costs nothing until someone looks; after
that each job update rewrites one leaf's label in place.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from typing import Any

from pylon.tui.fmt import STATE_MARK, STATE_STYLE, secs
from pylon.tui.messages import OpenJob
from pylon.tui.model import BuyerModel, Changes, short
from rich.text import Text
from textual.widgets import Tree
from textual.widgets.tree import TreeNode

RUN_STATE_ORDER = ("completed", "failed", "cancelled", "processing", "assigned", "submitted")

Data = tuple[str, str]  # ("run", run_id) | ("dir", run_id) | ("job", job_id)


class RunsTree(Tree[Data]):
    def __init__(self, model: BuyerModel, **kwargs: Any) -> None:
        super().__init__("runs", **kwargs)
        self.model = model
        self.show_root = False
        self.guide_depth = 3
        self.filter_text = ""
        self._runs: dict[str, TreeNode[Data]] = {}
        self._dirs: dict[tuple[str, str], TreeNode[Data]] = {}
        self._leaves: dict[str, TreeNode[Data]] = {}
        self._populated: set[str] = set()
        self._auto_opened: set[str] = set()

    # --- labels ---------------------------------------------------------------------------------

    def run_label(self, run: Mapping[str, Any]) -> Text:
        rid = run["run_id"]
        counts = self.model.run_counts(rid)
        files = run.get("files") or sum(counts.values())
        done = counts.get("completed", 0) + counts.get("failed", 0) + counts.get("cancelled", 0)
        label = Text()
        label.append(f"run {short(rid, 12)}", style="bold")
        label.append(f"  {run.get('repo') or ''}", style="italic")
        label.append(f"  {done}/{files}")
        finished = run.get("finished")
        label.append("  done" if finished else "  running", style="green" if finished else "bold cyan")
        for state in RUN_STATE_ORDER:
            n = counts.get(state, 0)
            if n:
                label.append(f"  {STATE_MARK.get(state, '')}{n} {state}", style=STATE_STYLE.get(state, ""))
        return label

    def job_label(self, job: Mapping[str, Any]) -> Text:
        state = job.get("state") or "submitted"
        label = Text()
        label.append(f"{STATE_MARK.get(state, ' ')} ", style=STATE_STYLE.get(state, ""))
        label.append(posixpath.basename(job.get("path") or short(job["job_id"])))
        label.append(f"  {state}", style=STATE_STYLE.get(state, ""))
        if job.get("provider_pubkey"):
            label.append(f"  @{self.model.node_name(job['provider_pubkey'])}", style="dim")
        if job.get("end_to_end") is not None:
            label.append(f"  {secs(job['end_to_end'])}")
        if (job.get("attempts") or 1) > 1:
            label.append(f"  try {job['attempts']}", style="yellow")
        if job.get("error"):
            label.append(f"  {job['error']}", style="red")
        return label

    # --- syncing --------------------------------------------------------------------------------

    def sync(self, run_changes: Changes, job_changes: Changes) -> None:
        m = self.model
        run_ids = list(m.runs) if run_changes.all else [r for r in run_changes.keys if r in m.runs]
        for rid in run_ids:
            node = self._runs.get(rid)
            if node is None:
                node = self._runs[rid] = self.root.add(self.run_label(m.runs[rid]), data=("run", rid))
            else:
                node.set_label(self.run_label(m.runs[rid]))
        if job_changes.all:
            for rid in list(self._populated):
                self._populate(rid, force=True)
        else:
            for jid in job_changes.keys:
                job = m.jobs.get(jid)
                if job is None:
                    continue
                rid = job.get("run_id")
                if not rid or rid not in self._populated:
                    continue
                leaf = self._leaves.get(jid)
                if leaf is not None:
                    if self._matches(job):
                        leaf.set_label(self.job_label(job))
                    else:
                        self._remove_leaf(jid)
                elif self._matches(job):
                    self._add_leaf(rid, job)
        self._open_newest()

    def _open_newest(self) -> None:
        """The newest unfinished run opens itself, once: the operator sees it fill in."""
        active = [r for r in self.model.runs.values() if r.get("finished") is None]
        if not active:
            return
        rid = max(active, key=lambda r: r.get("started") or 0)["run_id"]
        if rid in self._auto_opened or rid not in self._runs:
            return
        self._auto_opened.add(rid)
        self._populate(rid)
        self._runs[rid].expand()

    def _populate(self, rid: str, *, force: bool = False) -> None:
        if rid in self._populated and not force:
            return
        run_node = self._runs.get(rid)
        if run_node is None:
            return
        for jid in [j for j in self._leaves if self.model.jobs.get(j, {}).get("run_id") == rid]:
            del self._leaves[jid]
        for key in [k for k in self._dirs if k[0] == rid]:
            del self._dirs[key]
        run_node.remove_children()
        self._populated.add(rid)
        for jid in sorted(
            self.model.run_jobs.get(rid, ()), key=lambda j: self.model.jobs[j].get("path") or ""
        ):
            job = self.model.jobs[jid]
            if self._matches(job):
                self._add_leaf(rid, job)

    def _add_leaf(self, rid: str, job: Mapping[str, Any]) -> None:
        parent = self._runs[rid]
        folder = posixpath.dirname(job.get("path") or "")
        if folder:
            key = (rid, folder)
            parent = self._dirs.get(key) or self._new_dir(key)
        self._leaves[job["job_id"]] = parent.add_leaf(self.job_label(job), data=("job", job["job_id"]))

    def _new_dir(self, key: tuple[str, str]) -> TreeNode[Data]:
        node = self._runs[key[0]].add(
            Text(key[1] + "/", style="bold blue"), data=("dir", key[0]), expand=True
        )
        self._dirs[key] = node
        return node

    def _remove_leaf(self, jid: str) -> None:
        leaf = self._leaves.pop(jid, None)
        if leaf is not None:
            leaf.remove()

    def _matches(self, job: Mapping[str, Any]) -> bool:
        if not self.filter_text:
            return True
        hay = " ".join(str(job.get(k) or "") for k in ("job_id", "path", "state", "error"))
        hay = f"{hay} {self.model.node_name(job.get('provider_pubkey'))}".lower()
        return all(word in hay for word in self.filter_text.split())

    def set_filter(self, text: str) -> None:
        self.filter_text = text.strip().lower()
        for rid in list(self._populated):
            self._populate(rid, force=True)

    def on_tree_node_selected(self, event: Tree.NodeSelected[Data]) -> None:
        data = event.node.data
        if data is not None and data[0] == "job":
            event.stop()
            self.post_message(OpenJob(data[1]))

    def on_tree_node_expanded(self, event: Tree.NodeExpanded[Data]) -> None:
        data = event.node.data
        if data is not None and data[0] == "run":
            self._populate(data[1])

    # --- selection ------------------------------------------------------------------------------

    def selected(self) -> Data | None:
        node = self.cursor_node
        return None if node is None else node.data

    def select_run(self, rid: str) -> bool:
        node = self._runs.get(rid)
        if node is None:
            return False
        _ = self.last_line  # lays the tree out, so a node added this tick has its line number
        self.move_cursor(node)
        return True

    def select_job(self, jid: str) -> bool:
        job = self.model.jobs.get(jid)
        if job is None or not job.get("run_id"):
            return False
        rid = job["run_id"]
        self._populate(rid)
        self._runs[rid].expand()
        leaf = self._leaves.get(jid)
        if leaf is None:
            return False
        if leaf.parent is not None:
            leaf.parent.expand()
        _ = self.last_line
        self.move_cursor(leaf)
        return True

    @property
    def leaf_count(self) -> int:
        return len(self._leaves)
