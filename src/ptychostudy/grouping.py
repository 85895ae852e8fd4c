"""How Phase D forms groups: each seed position's K nearest neighbours and C-subsets of them (views.py, and the
measured network's groups in measured.py)."""

from __future__ import annotations

import itertools

import numpy as np


def nearest_neighbours(points: np.ndarray, k: int, chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Indices and distances of each point's ``k`` nearest points, itself first.

    Ties are broken by index, so the result is deterministic. Returns (n, k') arrays with
    k' = min(k, n).
    """
    points = np.asarray(points, dtype=np.float64)
    n = len(points)
    k = min(k, n)
    indices = np.empty((n, k), dtype=np.int64)
    distances = np.empty((n, k))
    for start in range(0, n, chunk):
        block = points[start : start + chunk]
        d = np.sqrt(((block[:, None, :] - points[None, :, :]) ** 2).sum(-1))
        d[np.arange(len(block)), np.arange(start, start + len(block))] = -1.0  # self first
        order = np.argsort(d, axis=1, kind="stable")[:, :k]
        indices[start : start + chunk] = order
        distances[start : start + chunk] = np.take_along_axis(d, order, axis=1)
    distances[:, 0] = 0.0
    return indices, distances


def make_groups(points: np.ndarray, group_size: int, neighbours: int, per_seed: int, rng: np.random.Generator) -> np.ndarray:
    """(n_groups, C) position indices: C-subsets of each seed's K nearest neighbours."""
    n = len(points)
    if group_size == 1:
        return rng.permutation(n)[:, None].astype(np.int64)
    indices, _ = nearest_neighbours(points, neighbours)
    combos = np.asarray(list(itertools.combinations(range(indices.shape[1]), group_size)), dtype=np.int64)
    chosen = []
    for seed in range(n):
        pick = combos if len(combos) <= per_seed else combos[np.sort(rng.choice(len(combos), per_seed, replace=False))]
        chosen.append(indices[seed][pick])
    groups = np.sort(np.concatenate(chosen), axis=1)
    groups = np.unique(groups, axis=0)  # the same set reached from two seeds counts once
    return groups[rng.permutation(len(groups))]
