"""The runs: each map run a tree of its subtasks, grouped by directory, that fills in as results arrive.

Nothing is built before someone looks: a run's directories are made when the run is expanded
(the newest run opens by itself, finished or not), and in a big run a directory's subtasks only when that
directory is expanded, each directory showing its counts per state meanwhile. After that a job
update rewrites one leaf's label (and its directory's counts) in place. Textual's Tree walks
every expanded node when its lines change, so a 2,000-file run left fully open would cost a
frame per update; collapsed directories keep that walk short.
"""

from __future__ import annotations

import posixpath
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from pylon.tui.fmt import STATE_MARK, STATE_STYLE, secs
from pylon.tui.messages import OpenJob
from pylon.tui.model import BuyerModel, Changes, short
from pylon.tui.widgets.grows_in_place import GrowsInPlace
from rich.text import Text
from textual.widgets import Tree
from textual.widgets.tree import TreeNode

RUN_STATE_ORDER = ("completed", "failed", "cancelled", "processing", "assigned", "submitted")
TERMINAL = ("completed", "failed", "cancelled")
OPEN_DIRS_UP_TO = 100  # a run with more subtasks than this shows its directories closed

Data = tuple[str, ...]  # ("run", run_id) | ("dir", run_id, folder) | ("job", job_id)
DirKey = tuple[str, str]  # (run_id, folder)


def counts_text(counts: Mapping[str, int], total: int) -> Text:
    done = sum(counts.get(s, 0) for s in TERMINAL)
    text = Text(f"  {done}/{total}")
    for state in RUN_STATE_ORDER:
        n = counts.get(state, 0)
        if n:
            text.append(f"  {STATE_MARK.get(state, '')}{n} {state}", style=STATE_STYLE.get(state, ""))
    return text


class RunsTree(GrowsInPlace, Tree[Data]):
    def __init__(self, model: BuyerModel, **kwargs: Any) -> None:
        super().__init__("runs", **kwargs)
        self.model = model
        self.show_root = False
        self.guide_depth = 3
        self.filter_text = ""
        self._runs: dict[str, TreeNode[Data]] = {}
        self._dirs: dict[DirKey, TreeNode[Data]] = {}
        self._dir_jobs: dict[DirKey, dict[str, None]] = {}
        self._loaded_dirs: set[DirKey] = set()
        self._leaves: dict[str, TreeNode[Data]] = {}
        self._populated: set[str] = set()
        self._auto_opened: set[str] = set()

    # --- labels ---------------------------------------------------------------------------------

    def run_label(self, run: Mapping[str, Any]) -> Text:
        rid = run["run_id"]
        counts = self.model.run_counts(rid)
        label = Text()
        label.append(f"run {short(rid, 12)}", style="bold")
        label.append(f"  {run.get('repo') or ''}", style="italic")
        finished = run.get("finished")
        label.append_text(counts_text(counts, run.get("files") or sum(counts.values())))
        label.append("  done" if finished else "  running", style="green" if finished else "bold cyan")
        return label

    def dir_label(self, key: DirKey) -> Text:
        jobs = self.model.jobs
        ids = self._dir_jobs.get(key, {})
        counts = Counter(jobs[j]["state"] for j in ids if j in jobs)
        label = Text(f"{key[1]}/", style="bold blue")
        label.append_text(counts_text(counts, len(ids)))
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
                self._runs[rid] = self.root.add(self.run_label(m.runs[rid]), data=("run", rid))
            else:
                node.set_label(self.run_label(m.runs[rid]))
        if job_changes.all:
            for rid in list(self._populated):
                self._populate(rid, force=True)
        else:
            touched: set[DirKey] = set()
            for jid in job_changes.keys:
                job = m.jobs.get(jid)
                if job is not None and job.get("run_id") in self._populated:
                    self._place(job, touched)
            for key in touched:
                if key in self._dirs:
                    self._dirs[key].set_label(self.dir_label(key))
        self._open_newest()

    def _place(self, job: Mapping[str, Any], touched: set[DirKey]) -> None:
        """A job of a shown run changed: file it under its directory, and relabel what shows it."""
        rid, jid = job["run_id"], job["job_id"]
        folder = posixpath.dirname(job.get("path") or "")
        key = (rid, folder)
        if folder:
            touched.add(key)
            if key not in self._dirs:
                self._new_dir(key, open_=self._small(rid))
            self._dir_jobs[key][jid] = None
            if key not in self._loaded_dirs:
                return  # a closed directory: its counts say it
        leaf = self._leaves.get(jid)
        if leaf is not None:
            if self._matches(job):
                leaf.set_label(self.job_label(job))
            else:
                self._remove_leaf(jid)
        elif self._matches(job):
            parent = self._dirs[key] if folder else self._runs[rid]
            self._leaves[jid] = parent.add_leaf(self.job_label(job), data=("job", jid))

    def _small(self, rid: str) -> bool:
        # By what the run will hold (its file count), not what has arrived: a run streaming in
        # starts small.
        files = int(self.model.runs.get(rid, {}).get("files") or 0)
        return max(files, len(self.model.run_jobs.get(rid, ()))) <= OPEN_DIRS_UP_TO

    def _open_newest(self) -> None:
        """The newest run opens itself, once: the operator sees it fill in.

        An unfinished run is preferred; failing that the newest finished one, because a small run
        can start and finish between two updates of the TUI and must not stay closed for that.
        """
        runs = list(self.model.runs.values())
        if not runs:
            return
        active = [r for r in runs if r.get("finished") is None]
        rid = max(active or runs, key=lambda r: r.get("started") or 0)["run_id"]
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
        for key in [k for k in self._dirs if k[0] == rid]:
            del self._dirs[key]
            self._dir_jobs.pop(key, None)
            self._loaded_dirs.discard(key)
        for jid in [j for j, leaf in self._leaves.items() if self._run_of(leaf) == rid]:
            del self._leaves[jid]
        run_node.remove_children()
        self._populated.add(rid)
        open_ = self._small(rid)
        jobs = self.model.jobs
        by_path = sorted(self.model.run_jobs.get(rid, ()), key=lambda j: jobs[j].get("path") or "")
        for jid in by_path:
            folder = posixpath.dirname(jobs[jid].get("path") or "")
            if folder:
                key = (rid, folder)
                if key not in self._dirs:
                    self._new_dir(key, open_=open_)
                self._dir_jobs[key][jid] = None
        for key in [k for k in self._dirs if k[0] == rid]:
            self._dirs[key].set_label(self.dir_label(key))
            if key in self._loaded_dirs:
                self._load_leaves(key)
        for jid in by_path:  # files at the top of the repo
            job = jobs[jid]
            if not posixpath.dirname(job.get("path") or "") and self._matches(job):
                self._leaves[jid] = run_node.add_leaf(self.job_label(job), data=("job", jid))

    def _new_dir(self, key: DirKey, *, open_: bool) -> None:
        node = self._runs[key[0]].add(
            Text(f"{key[1]}/", style="bold blue"), data=("dir", *key), expand=open_, allow_expand=True
        )
        self._dirs[key] = node
        self._dir_jobs[key] = {}
        if open_:
            self._loaded_dirs.add(key)

    def _load_leaves(self, key: DirKey, ids: Iterable[str] | None = None) -> None:
        self._loaded_dirs.add(key)
        node = self._dirs[key]
        jobs = self.model.jobs
        wanted = sorted(
            ids if ids is not None else self._dir_jobs[key], key=lambda j: jobs[j].get("path") or ""
        )
        for jid in wanted:
            job = jobs.get(jid)
            if job is not None and jid not in self._leaves and self._matches(job):
                self._leaves[jid] = node.add_leaf(self.job_label(job), data=("job", jid))

    def _run_of(self, leaf: TreeNode[Data]) -> str | None:
        data = leaf.data
        if data is None or data[0] != "job":
            return None
        return self.model.jobs.get(data[1], {}).get("run_id")

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
        if data is None:
            return
        if data[0] == "run":
            self._populate(data[1])
        elif data[0] == "dir":
            key = (data[1], data[2])
            if key not in self._loaded_dirs and key in self._dirs:
                self._load_leaves(key)

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
        if job is None or not job.get("run_id") or job["run_id"] not in self._runs:
            return False
        rid = job["run_id"]
        self._populate(rid)
        self._runs[rid].expand()
        folder = posixpath.dirname(job.get("path") or "")
        if folder and (rid, folder) in self._dirs:
            key = (rid, folder)
            if key not in self._loaded_dirs:
                self._load_leaves(key)
            self._dirs[key].expand()
        leaf = self._leaves.get(jid)
        if leaf is None:
            return False
        _ = self.last_line
        self.move_cursor(leaf)
        return True

    @property
    def leaf_count(self) -> int:
        return len(self._leaves)

    @property
    def dir_count(self) -> int:
        return len(self._dirs)
