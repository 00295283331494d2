"""Weighted PageRank by power iteration, in pure Python (a repo has thousands of files, not millions)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping


def pagerank(
    nodes: Iterable[str],
    edges: Mapping[str, Mapping[str, float]],
    *,
    damping: float = 0.85,
    personalization: Mapping[str, float] | None = None,
    tol: float = 1e-9,
    max_iter: int = 200,
) -> dict[str, float]:
    """Rank of every node; the ranks sum to 1.

    edges[a][b] = w means a links to b with weight w (> 0); edges to unknown nodes are ignored.
    A node with no out-links (dangling) hands its rank out like a random jump, following the
    personalization vector (uniform when None), so no rank leaks away.
    """
    order = sorted(set(nodes) | set(personalization or {}))
    n = len(order)
    if n == 0:
        return {}
    index = {node: i for i, node in enumerate(order)}

    if personalization:
        raw = [max(0.0, float(personalization.get(node, 0.0))) for node in order]
        total = sum(raw)
        jump = [r / total for r in raw] if total > 0 else [1.0 / n] * n
    else:
        jump = [1.0 / n] * n

    # out-links as (target index, normalised weight), per source index
    out: list[list[tuple[int, float]]] = [[] for _ in range(n)]
    for src, targets in edges.items():
        i = index.get(src)
        if i is None:
            continue
        kept = [(index[dst], float(w)) for dst, w in targets.items() if dst in index and w > 0]
        total = sum(w for _, w in kept)
        out[i] = [(j, w / total) for j, w in kept] if total > 0 else []
    dangling = [i for i in range(n) if not out[i]]

    rank = list(jump)
    for _ in range(max_iter):
        leaked = damping * sum(rank[i] for i in dangling)
        nxt = [(1.0 - damping) * jump[j] + leaked * jump[j] for j in range(n)]
        for i, links in enumerate(out):
            share = damping * rank[i]
            for j, w in links:
                nxt[j] += share * w
        delta = sum(abs(a - b) for a, b in zip(nxt, rank, strict=True))
        rank = nxt
        if delta < tol:
            break
    total = sum(rank)
    return {node: rank[index[node]] / total for node in order}
