"""A LightGBM model's trees as flat tables, scored in C for the few rows a request scores: the service's fast path.

Why: a recommend scores a handful of rows per model and explains the ones it returns. LightGBM's own ``predict``
spends ~15 us a call in Python before it scores (``_InnerPredictor`` per call, parameter strings), and its
``pred_contrib`` (path-dependent TreeSHAP, O(leaves x depth^2) per tree and row) cost ~280 us a row on the
propensity model (67 trees of 31 leaves, paths up to 14 deep): 55% of a recommend's CPU in the profile.

How: every internal node, leaf and path is laid out once in numpy arrays; ``_trees.c`` walks them. Predictions are
the plain tree walk. Contributions use the leaf-wise form of TreeSHAP: a leaf with value v whose path splits on d
distinct features, each with z_i (the share of the training rows that reach the leaf through the splits on i),
adds to feature i, for a row that follows the path's splits on the features in A (and not on the rest, B):

    i in A:   v * prod(z_B) * (1 - z_i) * G(A - {i})
    i in B:  -v * prod(z_B) * G(A)

with G(S) = sum over subsets T of S of |T|! (d - 1 - |T|)! / d! * prod(z over S - T). G is tabled per leaf for every
subset at load (2^d entries), so a row costs one pass over the paths instead of TreeSHAP's recursion; this is
the same Shapley value LightGBM computes, summed in another order (``tests/training/test_fast_trees.py`` holds
the two equal to 1e-9 on trained models, NaNs and categories included). Rows of one call that take the same way
through a tree (one customer's rows for several actions, which differ in the action alone) share its terms, and the
splits on columns all the rows share are decided once (bit for bit the same contributions; on the demo's offers 113
-> 111 us a propensity call warm, 128 -> 126 us with the caches flushed: the terms, not the splits, cost).

A tree's terms depend on the row only through the way it goes at each of the tree's splits, so a tree of at most
:data:`TABLE_SPLITS` splits has them tabled at load for each of its 2^splits ways (computed by the same walk as a
row's, then read by the row's way as bits): one short read per tree instead of a pass over its leaves' G entries, of
which a request finds few in the CPU's caches. The churn model's 746 trees of 7 leaves are all tabled (262,000
entries, 2 MB); the propensity model's 31-leaf trees are not (2^30 ways). Churn's one row on the 50,000-customer
demo's model: 176 -> 103 us with the caches flushed, 83 -> 28 us warm; recommend in process 1,018 -> 950 us of CPU
(medians of three interleaved runs of 3,000, load 5; 2026-12-05).

Predictions equal LightGBM's bit for bit: the same leaf values summed in tree order and, for binary, the logistic
taken with libm's exp as LightGBM's ConvertOutput does. The contributions' C part is branch-free where the way a row
goes decides (mispredicted branches cost more than the arithmetic). Tried and dropped by measurement on real rows:
G computed per row instead of tabled (slower with a warm cache, no faster with a cold one), a node per cache line
(no gain), and tree walks of fixed depth without branches, four rows at a time (slower than the plain walk).
Measured on 200 demo customers' own rows (the offers a recommend explains: 2.6 rows a call on average), with the
CPU caches below L3 flushed between calls as a request's Python does: 96 us a call on the propensity model and 31
us for the churn model's one row, against LightGBM's 800 us (load 3).

The rows of one predict call are nearly the same: one customer's for several actions (the churn model's 2 to 10 rows
differ in the action and accepted columns, the propensity model's in the action alone) or one contact's for its
eligible agents (the resolution and handle-time models' 24 rows differ in the agent's 36 of 81 columns). So the
trees go outer and the first row walks each tree until a node tests a column whose bits differ between the rows:
every row shares the way down to there, a tree whose way never tests one gives every row the same leaf, and
otherwise each row walks on alone from that node. Each row still gets its own leaf of each tree, summed in tree
order from 0.0: the plain walk's numbers, bit for bit. On the demo's rows no row walks past the first in 88% of the
churn model's trees, 37% and 50% of the resolution and handle-time models' and 39% of the propensity model's.
Measured on the rows of 200 recommends and 100 assigns (median per call, with the caches flushed between calls /
warm; load 4): churn 56 -> 35 us / 33 -> 17 us, resolution 88 -> 58 / 62 -> 39, handle time 38 -> 23 / 29 -> 17,
propensity 12.4 -> 11.9 / 6.3 -> 5.6; finding the varying columns costs ~1 us of that on 24 rows of 81 columns. (24
rows are the demo's eligible agents of an assign's 100 candidates; four times those rows in one call: resolution 258
-> 162 us, handle time 114 -> 62.) In process (3,000 recommends or assigns of the 50,000-customer demo through the
ASGI app, old and new C interleaved in blocks of 50 calls, load 3-4): recommend 0.88-0.97x its CPU (30-128 us less,
six runs), assign 0.94-0.97x (39-59 us less); more than the calls alone save, perhaps because a request's caches are
colder than the flush. Tried and dropped: splitting the rows at each node that tests a varying column, so that nodes
below on shared columns decide once per part (no faster than each row walking alone from the first such node). A
call of distinct customers' rows is no slower for it on the churn model, faster on the resolution models' (100 rows:
270 -> 231 and 105 -> 63 us) and ~10% slower on the propensity model's (134 rows: 167 -> 181 us), where no tree is
shared and the trees-outer order costs more than it saves; no request makes such a call.

What it does not take (``Unsupported``, and LightGBM's own predict serves): multiclass, linear trees, random-forest
averaging, an objective other than binary or regression, a path of more than :data:`MAX_PATH_FEATURES` distinct
features, and a machine where the C part did not build (the package installs without it).
"""

from __future__ import annotations

import ctypes
import importlib.machinery
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np

MAX_PATH_FEATURES = 16
"""Distinct features on one root-to-leaf path at most: a leaf's G table has 2^d entries."""
MAX_TABLE = 1 << 24
"""G entries per model at most (128 MB of float64): beyond it contributions go to LightGBM."""
TABLE_SPLITS = 8
"""Splits in a tree at most for its terms to be tabled by the way a row takes through it (2^8 ways)."""
_ZERO_THRESHOLD = float(np.float32(1e-35))


class Unsupported(Exception):
    """The model (or this machine) cannot take the fast path; LightGBM's predict serves it."""


def _library() -> ctypes.CDLL | None:
    here = Path(__file__).parent
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        path = here / f"_trees{suffix}"
        if path.exists():
            lib = ctypes.CDLL(str(path))
            # Pointers travel as plain ints (numpy's .ctypes.data): declared so, ctypes passes them whole and fast.
            pointer, count = ctypes.c_void_p, ctypes.c_int
            lib.trees_raw.argtypes = [pointer, pointer, count, pointer, ctypes.c_double]
            lib.trees_contributions.argtypes = [pointer, pointer, count, pointer, pointer, pointer, pointer]
            lib.trees_fill_g.argtypes = [pointer, pointer, pointer, pointer]
            lib.trees_fill_tables.argtypes = [pointer, pointer, pointer, pointer, pointer]
            for name in ("trees_raw", "trees_contributions", "trees_fill_g", "trees_fill_tables"):
                getattr(lib, name).restype = None
            return lib
    return None


_LIB = _library()
AVAILABLE = _LIB is not None
"""Whether the C part was built (it is an optional extension: see pyproject.toml)."""


class _Trees(ctypes.Structure):
    _fields_ = [
        ("n_features", ctypes.c_int32),
        ("n_trees", ctypes.c_int32),
        ("tree_root", ctypes.c_void_p),
        ("node_feature", ctypes.c_void_p),
        ("node_categorical", ctypes.c_void_p),
        ("node_threshold", ctypes.c_void_p),
        ("node_missing", ctypes.c_void_p),
        ("node_default_left", ctypes.c_void_p),
        ("node_left", ctypes.c_void_p),
        ("node_right", ctypes.c_void_p),
        ("node_cat_start", ctypes.c_void_p),
        ("node_cat_words", ctypes.c_void_p),
        ("cat_bits", ctypes.c_void_p),
        ("n_nodes", ctypes.c_int32),
        ("n_leaves", ctypes.c_int32),
        ("leaf_value", ctypes.c_void_p),
        ("leaf_slot_start", ctypes.c_void_p),
        ("leaf_g_start", ctypes.c_void_p),
        ("slot_feature", ctypes.c_void_p),
        ("slot_zero", ctypes.c_void_p),
        ("slot_entry_start", ctypes.c_void_p),
        ("entry_node", ctypes.c_void_p),
        ("entry_left", ctypes.c_void_p),
        ("g", ctypes.c_void_p),
        ("bias", ctypes.c_double),
        ("tree_node_start", ctypes.c_void_p),
        ("tree_feature_start", ctypes.c_void_p),
        ("tree_features", ctypes.c_void_p),
        ("tree_leaf_start", ctypes.c_void_p),
        ("tree_table_start", ctypes.c_void_p),
        ("table", ctypes.c_void_p),
    ]


_MISSING = {"None": 0, "Zero": 1, "NaN": 2}


class FastTrees:
    """One booster's trees as tables; :meth:`predict` and :meth:`contributions` equal LightGBM's to 1e-9."""

    def __init__(self, booster: lgb.Booster) -> None:
        if _LIB is None:
            raise Unsupported("the C part (training/_trees.c) was not built on this machine")
        model = booster.dump_model()
        if model.get("num_class", 1) != 1 or model.get("num_tree_per_iteration", 1) != 1:
            raise Unsupported("multiclass model")
        if model.get("average_output"):
            raise Unsupported("random-forest (averaged) model")
        objective = str(model.get("objective", "")).split()
        self._sigmoid: float | None = None
        if objective and objective[0] == "binary":
            params = dict(p.split(":", 1) for p in objective[1:] if ":" in p)
            self._sigmoid = float(params.get("sigmoid", 1.0))
        elif not objective or objective[0] != "regression":
            raise Unsupported(f"objective {' '.join(objective) or '(none)'}")
        self.n_features = booster.num_feature()
        self._build(model["tree_info"])

    def _build(self, trees: list[dict[str, Any]]) -> None:
        roots: list[int] = []
        nodes: list[tuple[int, bool, float, int, bool, int, int, list[int]]] = []
        left: list[int] = []
        right: list[int] = []
        leaf_value: list[float] = []
        slot_start, slot_feature, slot_zero, slot_entry = [0], [], [], [0]
        entry_node: list[int] = []
        entry_left: list[int] = []
        bias = 0.0

        def count(n: dict[str, Any]) -> float:
            return float(n["leaf_count"] if "leaf_value" in n else n["internal_count"])

        def walk(n: dict[str, Any], path: list[tuple[int, bool, int, float]], total: float) -> int:
            nonlocal bias
            if "leaf_value" in n:
                if "leaf_coeff" in n:
                    raise Unsupported("linear trees")
                leaf = len(leaf_value)
                leaf_value.append(float(n["leaf_value"]))
                bias += count(n) / total * float(n["leaf_value"])
                by_feature: dict[int, tuple[float, list[tuple[int, bool]]]] = {}
                for node, went_left, feature, share in path:
                    zero, splits = by_feature.get(feature, (1.0, []))
                    by_feature[feature] = (zero * share, [*splits, (node, went_left)])
                if len(by_feature) > MAX_PATH_FEATURES:
                    raise Unsupported(f"a path splits on {len(by_feature)} features (> {MAX_PATH_FEATURES})")
                for feature, (zero, splits) in by_feature.items():
                    slot_feature.append(feature)
                    slot_zero.append(zero)
                    entry_node.extend(s[0] for s in splits)
                    entry_left.extend(int(s[1]) for s in splits)
                    slot_entry.append(len(entry_node))
                slot_start.append(len(slot_feature))
                return ~leaf
            if n.get("decision_type") not in ("<=", "=="):
                raise Unsupported(f"decision type {n.get('decision_type')}")
            node = len(nodes)
            categorical = n["decision_type"] == "=="
            cats = [int(c) for c in str(n["threshold"]).split("||")] if categorical else []
            nodes.append(
                (
                    int(n["split_feature"]),
                    categorical,
                    0.0 if categorical else float(n["threshold"]),
                    _MISSING[n["missing_type"]],
                    bool(n["default_left"]),
                    0,
                    0,
                    cats,
                )
            )
            left.append(0)
            right.append(0)
            here = count(n)
            feature = int(n["split_feature"])
            left[node] = walk(n["left_child"], [*path, (node, True, feature, count(n["left_child"]) / here)], total)
            right[node] = walk(n["right_child"], [*path, (node, False, feature, count(n["right_child"]) / here)], total)
            return node

        tree_node_start, tree_feature_start, tree_features, tree_leaf_start = [0], [0], [], [0]
        for tree in trees:
            if tree.get("is_linear"):
                raise Unsupported("linear trees")
            root = tree["tree_structure"]
            if "leaf_value" in root:  # one leaf: a constant, all of it bias
                roots.append(~len(leaf_value))
                leaf_value.append(float(root["leaf_value"]))
                bias += float(root["leaf_value"])
                slot_start.append(len(slot_feature))
            else:
                roots.append(walk(root, [], count(root)))
            tree_features.extend(sorted({node[0] for node in nodes[tree_node_start[-1] :]}))
            tree_feature_start.append(len(tree_features))
            tree_node_start.append(len(nodes))
            tree_leaf_start.append(len(leaf_value))

        words: list[int] = []
        cat_start, cat_words = [], []
        for node in nodes:
            cats = node[7]
            n_words = (max(cats) // 32 + 1) if cats else 0
            bits = [0] * n_words
            for c in cats:
                bits[c // 32] |= 1 << (c % 32)
            cat_start.append(len(words))
            cat_words.append(n_words)
            words.extend(bits)

        sizes = np.diff(np.array(slot_start, dtype=np.int64))
        entries = np.where(sizes > 0, np.left_shift(1, sizes), 0)
        g_start = np.concatenate([[0], np.cumsum(entries)]).astype(np.int64)
        self.contributions_supported = int(g_start[-1]) <= MAX_TABLE
        table_start = _table_start(np.diff(tree_node_start), np.diff(tree_feature_start), self.contributions_supported)
        i32, u8, f64 = np.int32, np.uint8, np.float64
        self._arrays: dict[str, np.ndarray] = {
            "tree_root": np.array(roots, dtype=i32),
            "node_feature": np.array([n[0] for n in nodes], dtype=i32),
            "node_categorical": np.array([n[1] for n in nodes], dtype=u8),
            "node_threshold": np.array([n[2] for n in nodes], dtype=f64),
            "node_missing": np.array([n[3] for n in nodes], dtype=u8),
            "node_default_left": np.array([n[4] for n in nodes], dtype=u8),
            "node_left": np.array(left, dtype=i32),
            "node_right": np.array(right, dtype=i32),
            "node_cat_start": np.array(cat_start, dtype=i32),
            "node_cat_words": np.array(cat_words, dtype=i32),
            "cat_bits": np.array(words or [0], dtype=np.uint32),
            "leaf_value": np.array(leaf_value, dtype=f64),
            "leaf_slot_start": np.array(slot_start, dtype=i32),
            "leaf_g_start": g_start,
            "slot_feature": np.array(slot_feature or [0], dtype=i32),
            "slot_zero": np.array(slot_zero or [1.0], dtype=f64),
            "slot_entry_start": np.array(slot_entry, dtype=i32),
            "entry_node": np.array(entry_node or [0], dtype=i32),
            "entry_left": np.array(entry_left or [0], dtype=u8),
            "g": np.zeros(int(g_start[-1]) if self.contributions_supported else 1, dtype=f64),
            "tree_node_start": np.array(tree_node_start, dtype=i32),
            "tree_feature_start": np.array(tree_feature_start, dtype=i32),
            "tree_features": np.array(tree_features or [0], dtype=i32),
            "tree_leaf_start": np.array(tree_leaf_start, dtype=i32),
            "tree_table_start": table_start,
            "table": np.zeros(max(int(table_start[-1]), 1), dtype=f64),
        }
        pointers = {name: a.ctypes.data for name, a in self._arrays.items()}
        self._trees = _Trees(
            n_features=self.n_features,
            n_trees=len(roots),
            n_nodes=len(nodes),
            n_leaves=len(leaf_value),
            bias=bias,
            **pointers,
        )
        self._address = ctypes.addressof(self._trees)
        self._nodes = max(len(nodes), 1)
        if self.contributions_supported:
            deepest = int(sizes.max()) if len(sizes) else 0
            scratch = np.zeros((1 << deepest) * (deepest + 1), dtype=f64)
            weights = np.zeros(max(deepest, 1), dtype=f64)
            assert _LIB is not None
            _LIB.trees_fill_g(self._address, _ptr(self._arrays["g"]), _ptr(scratch), _ptr(weights))
            ways = np.zeros(self._nodes, dtype=u8)
            mismatch, term = np.zeros(self.n_features, dtype=np.int32), np.zeros(self.n_features + 1, dtype=f64)
            _LIB.trees_fill_tables(self._address, _ptr(self._arrays["table"]), _ptr(ways), _ptr(mismatch), _ptr(term))

    def _rows(self, x: np.ndarray) -> np.ndarray:
        rows = np.ascontiguousarray(np.atleast_2d(x), dtype=np.float64)
        if rows.shape[1] != self.n_features:
            raise ValueError(f"expected {self.n_features} columns, got {rows.shape[1]}")
        return rows

    def raw(self, x: np.ndarray) -> np.ndarray:
        """The sum of the trees' leaf values per row (LightGBM's ``raw_score=True``)."""
        rows = self._rows(x)
        out = np.empty(len(rows), dtype=np.float64)
        assert _LIB is not None
        _LIB.trees_raw(self._address, rows.ctypes.data, len(rows), out.ctypes.data, 0.0)
        return out

    def predict(self, x: np.ndarray) -> np.ndarray:
        """LightGBM's ``predict``: the objective's transform of :meth:`raw` (the logistic for binary), bit for bit."""
        if self._sigmoid is None:
            return self.raw(x)
        rows = self._rows(x)
        out = np.empty(len(rows), dtype=np.float64)
        assert _LIB is not None
        _LIB.trees_raw(self._address, rows.ctypes.data, len(rows), out.ctypes.data, self._sigmoid)
        return out

    def contributions(self, x: np.ndarray) -> np.ndarray:
        """LightGBM's ``pred_contrib=True``: per-feature SHAP values in raw-score units, the bias last."""
        if not self.contributions_supported:
            raise Unsupported(f"G tables would exceed {MAX_TABLE} entries")
        rows = self._rows(x)
        out = np.empty((len(rows), self.n_features + 1), dtype=np.float64)
        assert _LIB is not None
        decided = np.empty(len(rows) * self._nodes, dtype=np.uint8)
        terms = np.empty_like(out)
        mismatch = np.zeros(self.n_features, dtype=np.int32)
        scratch = [a.ctypes.data for a in (decided, terms, mismatch)]
        _LIB.trees_contributions(self._address, rows.ctypes.data, len(rows), out.ctypes.data, *scratch)
        return out


def _table_start(splits: np.ndarray, features: np.ndarray, supported: bool) -> np.ndarray:
    """Where each tree's table of terms starts (n_trees + 1 offsets; an empty range: the tree has none).

    A tree of at most :data:`TABLE_SPLITS` splits gets one: 2^splits ways through it, a term per feature it splits
    on for each, while the model's tables stay within :data:`MAX_TABLE` entries (the first trees first)."""
    sizes = np.where(splits <= TABLE_SPLITS, np.left_shift(1, np.minimum(splits, TABLE_SPLITS)) * features, 0)
    if not supported:
        sizes[:] = 0
    sizes = np.where(np.cumsum(sizes) <= MAX_TABLE, sizes, 0)
    return np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)


def _ptr(a: np.ndarray) -> int:
    return int(a.ctypes.data)
