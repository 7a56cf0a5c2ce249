"""k-means over image descriptors and the choice of a style cluster.

The seed clusters a word's web images into 3 groups of similar style (VGG19 fc6 features and
Neural Style Vectors) and renders the content image with one group's style.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np


@dataclasses.dataclass(frozen=True)
class KMeansResult:
    """``labels`` ``[n]`` in 0..k-1, ``centroids`` ``[k, d]``, ``inertia`` = sum of squared
    distances of points to their centroid.  Clusters are numbered by their first member
    (cluster 0 holds point 0, the next new label met in input order is 1, ...)."""

    labels: np.ndarray
    centroids: np.ndarray
    inertia: float


def _sq_dists(x: np.ndarray, c: np.ndarray) -> np.ndarray:
    """||x_i - c_j||^2 as ``[n, k]``, via ||x||^2 - 2 x.c + ||c||^2 (clipped at 0)."""
    d = (x * x).sum(1)[:, None] - 2.0 * x @ c.T + (c * c).sum(1)[None, :]
    return np.maximum(d, 0.0)


def _kmeans_pp(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding (Arthur & Vassilvitskii 2007): first centre uniform, each next one
    drawn with probability proportional to the squared distance to the nearest centre."""
    n = len(x)
    centres = [x[rng.integers(n)]]
    closest = _sq_dists(x, np.stack(centres))[:, 0]
    for _ in range(1, k):
        total = closest.sum()
        idx = rng.choice(n, p=closest / total) if total > 0 else rng.integers(n)
        centres.append(x[idx])
        closest = np.minimum(closest, _sq_dists(x, x[idx : idx + 1])[:, 0])
    return np.stack(centres)


def _lloyd(x, centres, max_iter, tol):
    for _ in range(max_iter):
        d = _sq_dists(x, centres)
        labels = d.argmin(1)
        new = centres.copy()
        for j in range(len(centres)):
            members = labels == j
            if members.any():
                new[j] = x[members].mean(0)
            else:  # empty cluster: move it to the point farthest from its centre
                far = d[np.arange(len(x)), labels].argmax()
                new[j] = x[far]
                labels[far] = j
        shift = np.abs(new - centres).max()
        centres = new
        if shift <= tol:
            break
    d = _sq_dists(x, centres)
    labels = d.argmin(1)
    return labels, centres, float(d[np.arange(len(x)), labels].sum())


def kmeans(
    x, k: int = 3, seed: int = 0, n_init: int = 10, max_iter: int = 100, tol: float = 1e-7
) -> KMeansResult:
    """k-means (Lloyd) with k-means++ seeding, best of ``n_init`` runs (lowest inertia).

    Minimises sum_i ||x_i - mu_{c(i)}||^2.  Deterministic for a given ``seed``.

    Args:
      x: ``[n, d]`` descriptors, n >= k.
      k: number of clusters.
      seed: seed of the k-means++ draws.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"kmeans expects [n, d] data, got shape {x.shape}.")
    if not 1 <= k <= len(x):
        raise ValueError(f"kmeans: k={k} needs 1 <= k <= number of points ({len(x)}).")
    rng = np.random.default_rng(seed)
    best = None
    for _ in range(max(1, n_init)):
        labels, centres, inertia = _lloyd(x, _kmeans_pp(x, k, rng), max_iter, tol)
        if best is None or inertia < best[2] - 1e-12:
            best = (labels, centres, inertia)
    labels, centres, inertia = best
    # Canonical numbering: by first appearance in input order.
    order = list(dict.fromkeys(labels.tolist()))
    order += [j for j in range(k) if j not in order]
    remap = np.empty(k, dtype=np.int64)
    remap[order] = np.arange(k)
    return KMeansResult(labels=remap[labels], centroids=centres[order], inertia=inertia)


def combine_descriptors(*parts: np.ndarray) -> np.ndarray:
    """Concatenation of descriptor blocks, each block L2-normalised per row and weighted
    1/sqrt(#blocks), so every block counts equally and rows have unit norm."""
    if not parts:
        raise ValueError("combine_descriptors needs at least one block.")
    blocks = []
    for p in parts:
        p = np.asarray(p, dtype=np.float64)
        norm = np.linalg.norm(p, axis=1, keepdims=True)
        blocks.append(p / np.maximum(norm, 1e-12) / math.sqrt(len(parts)))
    return np.concatenate(blocks, axis=1)


@dataclasses.dataclass(frozen=True)
class ClusterSummary:
    """A cluster's members (indices into the image list) and its style ``spread``: the mean
    pairwise Euclidean distance between the members' Neural Style Vectors (nan below 2)."""

    index: int
    members: tuple[int, ...]
    spread: float

    @property
    def size(self) -> int:
        return len(self.members)


def mean_pairwise_distance(v: np.ndarray) -> float:
    """Mean of ||v_i - v_j|| over pairs i < j (nan for fewer than 2 rows)."""
    v = np.asarray(v, dtype=np.float64)
    if len(v) < 2:
        return float("nan")
    d = np.sqrt(_sq_dists(v, v))
    iu = np.triu_indices(len(v), k=1)
    return float(d[iu].mean())


def summarize_clusters(labels, style_vectors, k: int | None = None) -> list[ClusterSummary]:
    """One :class:`ClusterSummary` per cluster 0..k-1 (``k`` default: max label + 1)."""
    labels = np.asarray(labels)
    style_vectors = np.asarray(style_vectors)
    k = int(labels.max()) + 1 if k is None else k
    out = []
    for j in range(k):
        members = tuple(int(i) for i in np.flatnonzero(labels == j))
        out.append(ClusterSummary(j, members, mean_pairwise_distance(style_vectors[list(members)])))
    return out


def min_cluster_size(n_images: int, k: int) -> int:
    """Smallest cluster ``auto`` considers: half the average cluster size, at least 2."""
    return max(2, math.ceil(n_images / (2 * k)))


def pick_coherent_cluster(summaries: list[ClusterSummary]) -> int:
    """The ``auto`` choice: the cluster most coherent in style.

    Among clusters with at least :func:`min_cluster_size` members (if none, at least 2), the one
    with the smallest ``spread`` (mean pairwise distance of its members' Neural Style Vectors);
    ties go to the larger, then the lower-numbered cluster.  Pairwise distance is used instead
    of distance-to-centroid because the latter shrinks with cluster size (a 2-image cluster's
    centroid sits halfway between them) and would favour tiny clusters.  If no cluster has 2
    members, the largest (then lowest-numbered) one is returned.
    """
    if not summaries:
        raise ValueError("No clusters to pick from.")
    n = sum(s.size for s in summaries)
    for floor in (min_cluster_size(n, len(summaries)), 2):
        eligible = [s for s in summaries if s.size >= floor and not math.isnan(s.spread)]
        if eligible:
            return min(eligible, key=lambda s: (s.spread, -s.size, s.index)).index
    return min(summaries, key=lambda s: (-s.size, s.index)).index
