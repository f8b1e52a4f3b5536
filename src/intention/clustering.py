"""Intention clustering (docs/method.md §6): one hierarchical tree per game, cut at every k.

Exact path: scipy ``linkage`` over the unique utterance embeddings (O(N^2) memory). Above
``exact_max_utterances`` a two-level path keeps memory linear: mini-batch k-means into
micro-clusters, then weighted HAC over their means (a Ward merge cost with cluster sizes, or
the exact average cosine distance between groups of unit vectors), and every point inherits
its micro-cluster's label. Labels are renumbered by first appearance so reruns are
byte-identical and independent of the tree's internal numbering.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.cluster.hierarchy import linkage as scipy_linkage
from scipy.sparse import csr_matrix

from src.intention.aggregation import PAD, first_appearance_rank
from src.intention.embedder import embed
from src.io_utils import InputError, atomic_dir, read_json, write_json
from src.intention.utterances import GameUtterances, read_game_rollouts

LINKAGES = ("ward", "average")


@dataclass
class ClusterConfig:
    embedder: str  # sentence-transformers name or path ("packaged:" = shipped)
    linkage: str  # ward (the original code) | average (cosine, the paper's appendix)
    k_min: int
    k_max: int
    exact_max_utterances: int  # more unique utterances: the two-level method
    micro_clusters: int  # two-level: mini-batch k-means clusters before HAC
    seed: int  # two-level: k-means seed

    def validate(self) -> str | None:
        if self.linkage not in LINKAGES:
            return f"linkage must be one of {list(LINKAGES)}"
        if not 2 <= self.k_min <= self.k_max:
            return "need 2 <= k_min <= k_max"
        if not self.k_max <= self.micro_clusters <= self.exact_max_utterances:
            return "need k_max <= micro_clusters <= exact_max_utterances"
        return None


@dataclass
class TreeCuts:
    """Labels of every item (unique utterance) for every k, plus the tree they come from."""

    k_values: np.ndarray  # (n_k,)
    labels: np.ndarray  # (n_k, n_items), small unsigned ints, canonical per row
    tree: np.ndarray  # scipy linkage matrix over the leaves (items, or micro-clusters)
    micro_cluster: np.ndarray | None  # two-level only: each item's micro-cluster (a leaf)
    method: str  # "exact" | "two-level"

    def at(self, k: int) -> np.ndarray:
        return self.labels[int(np.searchsorted(self.k_values, k))]


def relabel_by_first_appearance(labels: np.ndarray) -> np.ndarray:
    _, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
    return first_appearance_rank(first)[inverse.ravel()]


def cut_every_k(tree: np.ndarray, k_values: np.ndarray) -> np.ndarray:
    """Partition into exactly k clusters for each k by undoing the tree's last k-1 merges.

    Equals ``fcluster(tree, k, "maxclust")`` whenever merge heights do not tie at the cut (with
    ties fcluster may return fewer than k clusters; this always returns k).
    """
    n = len(tree) + 1
    merged = tree[:, :2].astype(np.int64)
    parent = np.empty(2 * n - 1, dtype=np.int64)
    parent[merged[:, 0]] = parent[merged[:, 1]] = np.arange(n, 2 * n - 1)
    # The clusters at k_max are the leaves and nodes of the first n - k_max merges whose parent
    # comes later; walking ids downwards meets every parent before its children.
    k_max = int(k_values[-1])
    first_later = 2 * n - k_max
    top = np.arange(2 * n - 1)
    for node in range(first_later - 1, -1, -1):
        if parent[node] < first_later:
            top[node] = top[parent[node]]
    node_of_leaf = top[:n].copy()
    out = np.empty((len(k_values), n), dtype=np.min_scalar_type(k_max - 1))
    for k in range(k_max, int(k_values[0]) - 1, -1):
        if k < k_max:  # from k+1 to k clusters: apply merge n-k-1
            row = n - k - 1
            node_of_leaf[np.isin(node_of_leaf, merged[row])] = n + row
        j = np.searchsorted(k_values, k)
        if j < len(k_values) and k_values[j] == k:
            out[j] = relabel_by_first_appearance(node_of_leaf)
    return out


def weighted_linkage(points: np.ndarray, weights: np.ndarray, method: str) -> np.ndarray:
    """HAC over weighted points (micro-cluster means), in scipy's linkage format.

    Nearest-neighbour chain with Lance-Williams updates starting from cluster sizes; with unit
    weights it reproduces scipy's ``ward`` and ``average``/cosine trees.
    """
    x = points.astype(np.float64)
    size = weights.astype(np.float64)
    m = len(x)
    if method == "ward":  # squared Ward height; singletons: squared Euclidean distance
        sq_norm = np.einsum("ij,ij->i", x, x)
        dist = np.maximum(sq_norm[:, None] + sq_norm[None, :] - 2 * x @ x.T, 0)
        dist *= 2 * np.outer(size, size) / (size[:, None] + size[None, :])
    else:  # mean cosine distance between the unit vectors of two groups = 1 - mean_a . mean_b
        dist = 1 - x @ x.T
    np.fill_diagonal(dist, np.inf)
    merges = []  # (leaf representing a, leaf representing b, height): a slot keeps its index
    chain: list[int] = []
    alive = np.ones(m, dtype=bool)
    for _ in range(m - 1):
        if not chain:
            chain.append(int(np.argmax(alive)))
        while True:
            a = chain[-1]
            b = int(np.argmin(dist[a]))
            if len(chain) > 1 and dist[a, chain[-2]] <= dist[a, b]:
                b = chain[-2]
                break
            chain.append(b)
        del chain[-2:]
        d_ab, s_a, s_b = dist[a, b], size[a], size[b]
        if method == "ward":
            new = ((s_a + size) * dist[a] + (s_b + size) * dist[b] - size * d_ab) / (s_a + s_b + size)
        else:
            new = (s_a * dist[a] + s_b * dist[b]) / (s_a + s_b)
        keep, drop = min(a, b), max(a, b)
        dist[keep], dist[:, keep] = new, new
        dist[drop], dist[:, drop] = np.inf, np.inf
        dist[keep, keep] = np.inf
        size[keep] = s_a + s_b
        alive[drop] = False
        merges.append((keep, drop, np.sqrt(d_ab) if method == "ward" else d_ab))
    return linkage_matrix(merges)


def linkage_matrix(merges: list[tuple[int, int, float]]) -> np.ndarray:
    """scipy's layout from merges named by representative leaves: sorted by height, nodes
    numbered n, n+1, ... in that order, column 3 counting leaves."""
    n = len(merges) + 1
    order = sorted(range(len(merges)), key=lambda r: merges[r][2])  # stable, like scipy
    root = np.arange(n)
    node = np.arange(n)  # node id of the cluster whose union-find root is this leaf
    count = np.ones(n, dtype=np.int64)
    tree = np.empty((n - 1, 4))

    def find(leaf: int) -> int:
        while root[leaf] != leaf:
            root[leaf] = root[root[leaf]]
            leaf = root[leaf]
        return leaf

    for step, r in enumerate(order):
        a, b, height = merges[r]
        ra, rb = find(a), find(b)
        na, nb = sorted((node[ra], node[rb]))
        tree[step] = (na, nb, height, count[ra] + count[rb])
        root[rb] = ra
        node[ra], count[ra] = n + step, count[ra] + count[rb]
    return tree


def exact_cuts(vectors: np.ndarray, k_values: np.ndarray, method: str) -> TreeCuts:
    if method == "ward":
        tree = scipy_linkage(vectors, method="ward")
    else:
        tree = scipy_linkage(vectors, method="average", metric="cosine")
    return TreeCuts(k_values, cut_every_k(tree, k_values), tree, None, "exact")


def two_level_cuts(vectors: np.ndarray, k_values: np.ndarray, method: str, micro_clusters: int,
                   seed: int) -> TreeCuts:
    from sklearn.cluster import MiniBatchKMeans

    # Random initial centres: k-means++ costs minutes for thousands of centres on 2 cores, and
    # the HAC above the micro-clusters does the coarse structure anyway.
    kmeans = MiniBatchKMeans(n_clusters=micro_clusters, init="random", random_state=seed,
                             batch_size=8192, n_init=1, compute_labels=False)
    micro = relabel_by_first_appearance(kmeans.fit(vectors).predict(vectors))  # drops empties
    m = int(micro.max()) + 1
    if m < k_values[-1]:
        raise InputError(f"only {m} non-empty micro-clusters, fewer than k_max={k_values[-1]}")
    member = csr_matrix((np.ones(len(micro), np.float32), (micro, np.arange(len(micro)))),
                        shape=(m, len(micro)))
    counts = np.bincount(micro)
    means = (member @ vectors) / counts[:, None]
    tree = weighted_linkage(means, counts, method)
    # Micro-cluster ids follow their first point, so canonical leaf labels are canonical points.
    labels = cut_every_k(tree, k_values)[:, micro]
    return TreeCuts(k_values, labels, tree, micro.astype(np.int32), "two-level")


def tree_cuts(vectors: np.ndarray, k_values: np.ndarray, cfg: ClusterConfig) -> TreeCuts:
    if len(vectors) <= cfg.exact_max_utterances:
        return exact_cuts(vectors, k_values, cfg.linkage)
    return two_level_cuts(vectors, k_values, cfg.linkage, cfg.micro_clusters, cfg.seed)


def labels_at_chosen_k(utt: GameUtterances, cuts: TreeCuts,
                      chosen_k: dict[str, int]) -> np.ndarray:
    """Label matrix of ``utt``: each clustered utterance cut at its label role's k."""
    return utt.labels([cuts.at(chosen_k[role]) for role in utt.roles])


def cluster_at_chosen_k(utt: GameUtterances, chosen_k: dict[str, int],
                        cfg: ClusterConfig) -> np.ndarray:
    """Label matrix of utterances the cluster stage never saw (online RL's new episodes with
    the old ones): one fresh tree over all their texts, cut at each role's chosen k (at most
    the number of unique texts)."""
    k = {role: min(chosen_k[role], len(utt.texts)) for role in utt.roles}
    cuts = tree_cuts(embed(utt.texts, cfg.embedder), np.array(sorted(set(k.values()))), cfg)
    return labels_at_chosen_k(utt, cuts, k)


def k_range(cfg: ClusterConfig, n_unique: int, where: str) -> np.ndarray:
    if n_unique < max(2, cfg.k_min):
        raise InputError(f"{where}: only {n_unique} unique utterance(s) to cluster; "
                         f"need at least {max(2, cfg.k_min)} (cluster.k_min)")
    return np.arange(cfg.k_min, min(cfg.k_max, n_unique) + 1)


# -- stage -------------------------------------------------------------------------------
def cluster_game(cfg: ClusterConfig, game: str, rollouts: Path, out_dir: Path) -> dict:
    """The cluster stage: embeddings, tree and labels for every k in ``out_dir``; metrics."""
    start = time.perf_counter()
    utt = GameUtterances.from_episodes(game, read_game_rollouts(rollouts, game))
    k_values = k_range(cfg, len(utt.texts), str(rollouts))
    vectors = embed(utt.texts, cfg.embedder)
    cuts = tree_cuts(vectors, k_values, cfg)
    n_utterances = int((utt.text_index >= 0).sum())
    meta = {
        "game": game, "embedder": cfg.embedder, "linkage": cfg.linkage, "method": cuts.method,
        "k_min": int(k_values[0]), "k_max": int(k_values[-1]),
        "n_utterances": n_utterances, "n_unique": len(utt.texts),
    }
    if cuts.method == "two-level":
        meta["micro_clusters"] = int(cuts.micro_cluster.max()) + 1
    save_cuts(out_dir, utt.texts, vectors, cuts, meta)
    metrics = dict(meta, seconds=round(time.perf_counter() - start, 2),
                   n_fixed_class=int(((utt.text_index < 0) & (utt.text_index != PAD)).sum()))
    if k_values[-1] < cfg.k_max:
        metrics["note"] = (f"k_max capped at {k_values[-1]} = number of unique utterances "
                           f"(configured {cfg.k_max})")
    if cuts.method == "two-level":
        metrics["note_method"] = (f"{len(utt.texts)} unique utterances > exact_max_utterances="
                                  f"{cfg.exact_max_utterances}: mini-batch k-means into "
                                  f"{meta['micro_clusters']} micro-clusters, then weighted "
                                  f"{cfg.linkage} HAC over their means")
    return metrics


def save_cuts(out_dir: Path, texts: list[str], vectors: np.ndarray, cuts: TreeCuts, meta: dict) -> None:
    arrays = {"embeddings": vectors, "labels": cuts.labels, "k_values": cuts.k_values,
              "tree": cuts.tree}
    if cuts.micro_cluster is not None:
        arrays["micro_cluster"] = cuts.micro_cluster
    with atomic_dir(out_dir) as tmp:
        for name, array in arrays.items():
            np.save(tmp / f"{name}.npy", array)
        write_json(tmp / "texts.json", texts)
        write_json(tmp / "meta.json", meta)


@dataclass
class SavedClustering:
    meta: dict
    texts: list[str]
    embeddings: np.ndarray
    cuts: TreeCuts


def load_clustering(out_dir: Path, utt: GameUtterances) -> SavedClustering:
    """Read the cluster stage's output and check it was made from these rollouts."""
    meta = read_json(out_dir / "meta.json")
    texts = read_json(out_dir / "texts.json")
    if texts != utt.texts:
        raise InputError(f"{out_dir}: clustered utterances differ from the rollouts "
                         f"(stale cluster output? rerun the cluster stage)")

    def array(name: str) -> np.ndarray:
        path = out_dir / f"{name}.npy"
        if not path.exists():
            raise InputError(f"{path}: not found")
        return np.load(path)

    micro = array("micro_cluster") if meta["method"] == "two-level" else None
    cuts = TreeCuts(array("k_values"), array("labels"), array("tree"), micro, meta["method"])
    return SavedClustering(meta, texts, array("embeddings"), cuts)
