"""Scores of a predicted JSON against its ground truth, with Donut's conventions (public contract).

Donut (clovaai/donut, `JSONParseEvaluator`) is what published CORD figures use, so these follow it exactly:

* normalisation: empty values (None, "", 0, False, [], {}) are dropped; dict keys are ordered by
  (length, key); every scalar becomes a one-element list of its stripped string; a list of dicts stays a
  sequence of dicts, any other list keeps only its str/int/float items;
* tree: "<root>" over one node per key; a list of dicts gives one "<subtree>" node per dict; a string gives
  a leaf labelled "<leaf>" + value;
* costs (not unit costs): inserting or deleting a leaf costs the length of its text, any other node 1;
  renaming leaf to leaf costs the Levenshtein distance of the texts, leaf to non-leaf 1 + the leaf's
  length, non-leaf to non-leaf 0 or 1;
* TED accuracy = max(0, 1 - TED(pred, gt) / TED(empty, gt));
* F1 = micro F1 over the (dotted key path, value) pairs of the normalised documents, as multisets.

Deliberate differences, both in corners Donut cannot reach or crashes on: a whitespace-only scalar is dropped
like an empty one (Donut's own decoder strips values, so it never produces one), and an empty ground truth
scores 1.0 against an empty prediction and 0.0 otherwise (Donut divides by zero), as does F1 with nothing to
count.

Speed, with the same results: TED(empty, gt) needs no tree search (mapping the two roots and inserting the
rest is optimal, so it is the sum of gt's insertion costs); the gt's tree and that sum are cached per ground
truth; identical leading and trailing subtrees are stripped exactly before APTED runs (`forest_distance`);
leaf Levenshtein distances are memoised.

A bounded cost, where the caller asks for it (`ted_score` with a `Budget`; a review's score in `bayou serve`):
APTED's time grows with the product of the two trees' sizes (two 100-line receipts that differ everywhere,
some 900 nodes each, take about a minute), so a pair of differing trees whose sizes' product passes the
budget is aligned top-down instead (`top_down_distance`: roots mapped to each other, children aligned in
order as in a sequence edit distance). That is an edit script too, so its distance is never below the true
TED and the accuracy never above it; the score says it is approximate. `ted_accuracy` is always exact.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from statistics import fmean
from typing import Any

from apted import APTED, Config

ROOT = "<root>"
SUBTREE = "<subtree>"
LEAF = "<leaf>"


# ---- normalisation ----------------------------------------------------------------------------------------


def normalize(data: Any) -> Any:
    """Donut's `normalize_dict`: the canonical form that trees and F1 are computed from."""
    if not data or (isinstance(data, str) and not data.strip()):
        return {}
    if isinstance(data, Mapping):
        normalized: dict[str, Any] = {}
        for key in sorted(data, key=lambda k: (len(k), k)):
            value = normalize(data[key])
            if value:
                normalized[key] = value if isinstance(value, list) else [value]
        return normalized
    if isinstance(data, list):
        if all(isinstance(item, Mapping) for item in data):
            return [item for item in (normalize(element) for element in data) if item]
        # exact type test, as Donut: bools, None and nested lists inside a value list are dropped
        return [str(item).strip() for item in data if type(item) in (str, int, float) and str(item).strip()]
    return [str(data).strip()]


def flatten(normalized: Any) -> list[tuple[str, str]]:
    """(dotted key path, value) pairs of a normalised document, in document order."""
    pairs: list[tuple[str, str]] = []

    def visit(value: Any, path: str) -> None:
        if isinstance(value, dict):
            for key, child in value.items():
                visit(child, f"{path}.{key}" if path else key)
        elif isinstance(value, list):
            for child in value:
                visit(child, path)
        else:
            pairs.append((path, value))

    visit(normalized, "")
    return pairs


# ---- trees ------------------------------------------------------------------------------------------------


class TreeNode:
    """A node of the scoring tree, immutable once built. Leafness follows Donut: the label contains "<leaf>".

    `signature` makes identical subtrees compare equal in one tuple comparison; `weight` is the cost of
    inserting (or deleting) the whole subtree.
    """

    __slots__ = ("label", "children", "is_leaf", "text", "cost", "weight", "signature")

    def __init__(self, label: str, children: Sequence[TreeNode] = ()) -> None:
        self.label = label
        self.children = list(children)
        self.is_leaf = LEAF in label
        self.text = label.replace(LEAF, "") if self.is_leaf else label
        self.cost = len(self.text) if self.is_leaf else 1
        self.weight: int = self.cost + sum(child.weight for child in self.children)
        self.signature: tuple[Any, ...] = (label, tuple(child.signature for child in self.children))

    def size(self) -> int:
        return 1 + sum(child.size() for child in self.children)


def build_tree(normalized: Any, label: str = ROOT) -> TreeNode:
    """Donut's `construct_tree_from_dict` over an already normalised document."""
    if isinstance(normalized, dict):
        return TreeNode(label, [build_tree(value, key) for key, value in normalized.items()])
    if isinstance(normalized, list):
        if all(isinstance(item, dict) for item in normalized):
            return TreeNode(label, [build_tree(item, SUBTREE) for item in normalized])
        return TreeNode(label, [TreeNode(f"{LEAF}{item}") for item in normalized])
    raise TypeError(f"not a normalised document: {normalized!r}")


def insertion_cost(tree: TreeNode) -> int:
    """TED from a lone root to `tree`: the cost of inserting every node below the root."""
    return tree.weight - tree.cost


@lru_cache(maxsize=1 << 16)
def levenshtein(a: str, b: str) -> int:
    """Edit distance with unit insert, delete and substitute (nltk's `edit_distance` defaults)."""
    if a == b:
        return 0
    if len(a) < len(b):
        a, b = b, a
    if not b:
        return len(a)
    previous = list(range(len(b) + 1))
    for i, char_a in enumerate(a, 1):
        current = [i]
        for j, char_b in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (char_a != char_b)))
        previous = current
    return previous[-1]


def rename_cost(first: TreeNode, second: TreeNode) -> int:
    if first.is_leaf and second.is_leaf:
        return levenshtein(first.text, second.text)
    if first.is_leaf or second.is_leaf:
        return 1 + len(first.text if first.is_leaf else second.text)
    return int(first.label != second.label)


class _DonutCosts(Config):
    def delete(self, node: TreeNode) -> int:
        return node.cost

    def insert(self, node: TreeNode) -> int:
        return node.cost

    def rename(self, node1: TreeNode, node2: TreeNode) -> int:
        return rename_cost(node1, node2)

    def children(self, node: TreeNode) -> list[TreeNode]:
        return node.children


_COSTS = _DonutCosts()


@dataclass
class Budget:
    """The most APTED may be asked to do in one distance: a pair of trees whose sizes' product is over
    `max_product` is aligned top-down instead, and `approximated` becomes True."""

    max_product: int
    approximated: bool = False


def tree_edit_distance(first: TreeNode, second: TreeNode, budget: Budget | None = None) -> int:
    """TED under Donut's costs, computed by APTED on what is left after two exact reductions (below); with a
    `budget`, an upper bound where APTED would pass it."""
    if first.label != second.label:
        return _apted(first, second, budget)
    return forest_distance(first.children, second.children, budget)


def forest_distance(
    first: Sequence[TreeNode], second: Sequence[TreeNode], budget: Budget | None = None
) -> int:
    """Edit distance between two ordered forests, using two facts that hold for Donut's costs.

    Both follow from c(x) >= 0 and |c(x) - c(y)| <= rename(x, y) for every pair of labels (c = insert or
    delete cost), which Donut's costs satisfy, by rewriting an optimal mapping without raising its cost:
    1. Two trees whose roots have the same label have an optimal mapping that maps root to root, so their
       distance is the distance between their children forests.
    2. A tree that begins (or ends) both forests identically can be removed from both: an optimal mapping
       never needs to map it anywhere but onto its copy.
    So identical leading and trailing subtrees are stripped level by level, and APTED runs only on the
    differing middle (under a shared virtual root, which by 1 adds nothing).
    """
    first, second = _strip_common_ends(first, second)
    if not first or not second:
        return sum(tree.weight for tree in first) + sum(tree.weight for tree in second)
    if len(first) == len(second) == 1 and first[0].label == second[0].label:
        return forest_distance(first[0].children, second[0].children, budget)
    return _apted(TreeNode(ROOT, first), TreeNode(ROOT, second), budget)


def _strip_common_ends(
    first: Sequence[TreeNode], second: Sequence[TreeNode]
) -> tuple[Sequence[TreeNode], Sequence[TreeNode]]:
    shortest = min(len(first), len(second))
    head = 0
    while head < shortest and first[head].signature == second[head].signature:
        head += 1
    tail = 0
    while tail < shortest - head and first[-1 - tail].signature == second[-1 - tail].signature:
        tail += 1
    return first[head : len(first) - tail], second[head : len(second) - tail]


def _apted(first: TreeNode, second: TreeNode, budget: Budget | None = None) -> int:
    if budget is not None and first.size() * second.size() > budget.max_product:
        budget.approximated = True
        return top_down_distance(first, second)
    return APTED(first, second, _COSTS).compute_edit_distance()


def top_down_distance(first: TreeNode, second: TreeNode) -> int:
    """An upper bound on TED, in time about the sizes' product with a small constant: the roots are mapped
    to each other and their children aligned in order (delete a whole subtree, insert one, or map two
    roots and recurse). It is the cost of a valid edit script (Selkow's top-down mapping), exact whenever
    an optimal mapping keeps every mapped node's parent mapped to its counterpart's parent."""
    if first.signature == second.signature:
        return 0
    return rename_cost(first, second) + _aligned(first.children, second.children)


def _aligned(first: Sequence[TreeNode], second: Sequence[TreeNode]) -> int:
    previous = [0]
    for tree in second:
        previous.append(previous[-1] + tree.weight)
    for tree in first:
        current = [previous[0] + tree.weight]
        for j, other in enumerate(second, 1):
            current.append(
                min(
                    previous[j] + tree.weight,
                    current[j - 1] + other.weight,
                    previous[j - 1] + top_down_distance(tree, other),
                )
            )
        previous = current
    return previous[-1]


# ---- per-document scores ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """A ground truth prepared for scoring: its normalised form, tree and TED from the empty tree."""

    normalized: Any
    tree: TreeNode
    empty_distance: int


def prepare(gt: Mapping[str, Any] | Target) -> Target:
    if isinstance(gt, Target):
        return gt
    return _prepare_cached(json.dumps(gt, sort_keys=True, default=str))


@lru_cache(maxsize=4096)
def _prepare_cached(canonical: str) -> Target:
    normalized = normalize(json.loads(canonical))
    tree = build_tree(normalized)
    return Target(normalized, tree, insertion_cost(tree))


def ted_accuracy(pred: Any, gt: Mapping[str, Any] | Target) -> float:
    """Donut's nTED accuracy: max(0, 1 - TED(pred, gt) / TED(empty, gt)), in [0, 1]."""
    return _accuracy(pred, gt, None)


@dataclass(frozen=True)
class TedScore:
    accuracy: float
    # False: the trees passed the budget and were aligned top-down; `accuracy` is then a lower bound
    exact: bool


# the most a review's score may ask of APTED, as the product of the two trees' sizes. Measured on a shared
# 2-core EPYC: 35,000 (two 20-line receipts differing on every line) 0.5 s, 76,000 (30 lines) 1.6 s; two
# 100-line ones (820,000) about a minute, which the top-down alignment does in about a second
REVIEW_BUDGET = 40_000


def ted_score(pred: Any, gt: Mapping[str, Any] | Target, *, max_product: int = REVIEW_BUDGET) -> TedScore:
    """ted_accuracy within a budget: past it, a top-down alignment's accuracy, marked approximate."""
    budget = Budget(max_product)
    accuracy = _accuracy(pred, gt, budget)
    return TedScore(accuracy, exact=not budget.approximated)


def _accuracy(pred: Any, gt: Mapping[str, Any] | Target, budget: Budget | None) -> float:
    target = prepare(gt)
    normalized = normalize(pred)
    if normalized == target.normalized:
        return 1.0
    if target.empty_distance == 0:
        return 0.0
    distance = tree_edit_distance(build_tree(normalized), target.tree, budget)
    return max(0.0, 1.0 - distance / target.empty_distance)


def perfect_match(pred: Any, gt: Mapping[str, Any] | Target) -> bool:
    """The prediction equals the ground truth after normalisation (TED 0)."""
    return normalize(pred) == prepare(gt).normalized


def field_f1(preds: Iterable[Any], gts: Iterable[Mapping[str, Any] | Target]) -> float:
    """Donut's `cal_f1`: micro F1 over (key path, value) pairs, summed over all documents."""
    true_positives = wrong = 0
    for pred, gt in zip(preds, gts, strict=True):
        predicted = Counter(flatten(normalize(pred)))
        expected = Counter(flatten(prepare(gt).normalized))
        matched = sum((predicted & expected).values())
        true_positives += matched
        wrong += predicted.total() + expected.total() - 2 * matched
    if true_positives + wrong == 0:
        return 1.0
    return true_positives / (true_positives + wrong / 2)


# ---- per-type aggregate (H2OVL-Mississippi report, Table 6) -----------------------------------------------


@dataclass(frozen=True)
class TypeScore:
    """Scores of one model on one document type. A prediction of None is output that did not parse."""

    documents: int
    parsed: int
    perfect_match_rate: float  # over all documents: an unparsed one is a miss
    ted_accuracy: float  # mean over parsed documents (Donut's figure)
    f1: float  # micro F1 over parsed documents (Donut's figure)

    @property
    def parse_rate(self) -> float:
        return self.parsed / self.documents if self.documents else 0.0

    @property
    def effective_ted_accuracy(self) -> float:
        """Mean TED accuracy with unparsed documents scoring 0."""
        return self.ted_accuracy * self.parse_rate

    @property
    def effective_f1(self) -> float:
        return self.f1 * self.parse_rate

    @property
    def table6(self) -> float:
        """mean(perfect-match rate, effective TED accuracy, effective F1)."""
        return fmean([self.perfect_match_rate, self.effective_ted_accuracy, self.effective_f1])

    def as_dict(self) -> dict[str, Any]:
        return {
            "documents": self.documents,
            "parsed": self.parsed,
            "parse_rate": self.parse_rate,
            "perfect_match_rate": self.perfect_match_rate,
            "ted_accuracy": self.ted_accuracy,
            "f1": self.f1,
            "effective_ted_accuracy": self.effective_ted_accuracy,
            "effective_f1": self.effective_f1,
            "table6": self.table6,
        }


def score_documents(preds: Sequence[Mapping[str, Any] | None], gts: Sequence[Mapping[str, Any]]) -> TypeScore:
    if len(preds) != len(gts):
        raise ValueError(f"{len(preds)} predictions for {len(gts)} ground truths")
    parsed = [(pred, gt) for pred, gt in zip(preds, gts, strict=True) if pred is not None]
    if not gts:
        return TypeScore(0, 0, 0.0, 0.0, 0.0)
    matches = sum(perfect_match(pred, gt) for pred, gt in parsed)
    ted = fmean(ted_accuracy(pred, gt) for pred, gt in parsed) if parsed else 0.0
    f1 = field_f1([pred for pred, _ in parsed], [gt for _, gt in parsed]) if parsed else 0.0
    return TypeScore(len(gts), len(parsed), matches / len(gts), ted, f1)
