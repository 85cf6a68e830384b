"""Gradient-boosted trees as numpy arrays: what the reader and the reranker ship and evaluate."""
from __future__ import annotations

import numpy as np

from .errors import RagError

__all__ = ["Trees"]


class Trees:
    """Gradient-boosted regression trees as flat arrays, evaluated with numpy.

    Node ``i`` tests ``x[feature[i]] <= threshold[i]`` and goes to ``left[i]`` or ``right[i]``;
    a leaf has ``feature == -1`` and points to itself, its value in ``value``. ``roots`` are the
    first node of each tree; the score of a row is the sum of its leaves' values.
    """

    def __init__(self, feature, threshold, left, right, value, roots, depth: int):
        self.feature = np.asarray(feature, np.int32)
        self.threshold = np.asarray(threshold, np.float64)
        self.left = np.asarray(left, np.int32)
        self.right = np.asarray(right, np.int32)
        self.value = np.asarray(value, np.float64)
        self.roots = np.asarray(roots, np.int32)
        self.depth = int(depth)

    def predict(self, X: np.ndarray, first: int = 0, last: int | None = None) -> np.ndarray:
        """Sum of the leaf values of trees ``first:last`` for every row of ``X``."""
        n = len(X)
        roots = self.roots[first:last]
        if n == 0 or len(roots) == 0:
            return np.zeros(n)
        flat = np.ascontiguousarray(X, dtype=np.float64).ravel()
        base = (np.arange(n, dtype=np.int64) * X.shape[1])[:, None]
        feat = np.maximum(self.feature, 0)
        node = np.broadcast_to(roots, (n, len(roots))).copy()
        for _ in range(self.depth):
            go_left = flat[base + feat[node]] <= self.threshold[node]
            node = np.where(go_left, self.left[node], self.right[node])
        return self.value[node].sum(axis=1)

    def __add__(self, more: "Trees") -> "Trees":
        """One model scoring the sum of both (``more``'s trees after these: a model boosted further
        from this one's scores, as ``scripts/adapt_reader.py`` grows them)."""
        off = len(self.feature)
        return Trees(np.concatenate([self.feature, more.feature]), np.concatenate([self.threshold, more.threshold]),
                     np.concatenate([self.left, more.left + off]), np.concatenate([self.right, more.right + off]),
                     np.concatenate([self.value, more.value]), np.concatenate([self.roots, more.roots + off]),
                     max(self.depth, more.depth))

    def first(self, nodes: int, trees: int) -> "Trees":
        """The model made of its first ``trees`` trees (held in its first ``nodes`` nodes)."""
        return Trees(self.feature[:nodes], self.threshold[:nodes], self.left[:nodes], self.right[:nodes],
                     self.value[:nodes], self.roots[:trees], self.depth)

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {"feature": self.feature.astype(np.int16), "threshold": self.threshold, "left": self.left,
                "right": self.right, "value": self.value.astype(np.float32), "roots": self.roots,
                "depth": np.array([self.depth])}

    @classmethod
    def from_arrays(cls, d) -> "Trees":
        return cls(d["feature"], d["threshold"], d["left"], d["right"], d["value"], d["roots"], int(d["depth"][0]))

    @classmethod
    def from_lightgbm(cls, dump: dict, feature_names: list[str]) -> "Trees":
        """From ``lightgbm.Booster.dump_model()`` (numerical ``<=`` splits only)."""
        feature, threshold, left, right, value, roots = [], [], [], [], [], []
        depth = 0

        def add(node: dict, d: int) -> int:
            nonlocal depth
            i = len(feature)
            feature.append(-1), threshold.append(0.0), left.append(i), right.append(i), value.append(0.0)
            if "leaf_value" in node:
                value[i] = node["leaf_value"]
                depth = max(depth, d)
                return i
            if node.get("decision_type", "<=") != "<=":
                raise RagError(f"trees: unsupported split {node.get('decision_type')!r}; train without "
                               "categorical features")
            feature[i] = node["split_feature"]
            threshold[i] = node["threshold"]
            left[i] = add(node["left_child"], d + 1)
            right[i] = add(node["right_child"], d + 1)
            return i

        names = dump.get("feature_names") or feature_names
        if list(names) != list(feature_names):
            raise RagError(f"trees: the model's features {list(names)} differ from this code's {list(feature_names)}; retrain it")
        for tree in dump["tree_info"]:
            roots.append(add(tree["tree_structure"], 0))
        return cls(feature, threshold, left, right, value, roots, depth)
