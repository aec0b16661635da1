from __future__ import annotations

import copy
import time
from typing import Any

import pytest
from apted import APTED
from hypothesis import given, settings
from hypothesis import strategies as st

from extractor import scoring
from extractor.scoring import (
    build_tree,
    field_f1,
    flatten,
    normalize,
    perfect_match,
    score_documents,
    ted_accuracy,
    ted_score,
    tree_edit_distance,
)

RECEIPT = {
    "merchant_name": "CAFE ONE",
    "total": "12.50",
    "items": [
        {"description": "TEA", "total_price": "4.50"},
        {"description": "CAKE", "total_price": "8.00"},
    ],
}

# ---- hand-computed values ---------------------------------------------------------------------------------


def test_identical_documents_score_one() -> None:
    assert ted_accuracy(copy.deepcopy(RECEIPT), RECEIPT) == 1.0
    assert perfect_match(copy.deepcopy(RECEIPT), RECEIPT)


@pytest.mark.parametrize("empty", [{}, None, {"merchant_name": None, "items": []}])
def test_empty_prediction_scores_zero(empty: Any) -> None:
    assert ted_accuracy(empty, RECEIPT) == 0.0
    assert not perfect_match(empty, RECEIPT)


def test_one_wrong_leaf_costs_its_edit_distance_over_the_tree_weight() -> None:
    # gt tree: <root> -> a -> <leaf>abc, <root> -> b -> <leaf>de
    # TED(empty, gt) = two key nodes (1 each) + leaves by length (3 + 2) = 7; "abc" -> "abd" is one edit
    assert ted_accuracy({"a": "abd", "b": "de"}, {"a": "abc", "b": "de"}) == pytest.approx(1 - 1 / 7)


def test_a_wrong_key_costs_one_rename() -> None:
    # rename key "b" -> "c" costs 1 (non-leaf labels), the leaf below it matches
    assert ted_accuracy({"a": "abc", "c": "de"}, {"a": "abc", "b": "de"}) == pytest.approx(1 - 1 / 7)


def test_a_missing_line_item_costs_its_subtree() -> None:
    pred = copy.deepcopy(RECEIPT)
    del pred["items"][1]
    # the dropped <subtree>: itself 1, two keys 2, leaves "CAKE" 4 and "8.00" 4
    gt_weight = build_tree(normalize(RECEIPT)).weight - 1  # minus the root
    assert ted_accuracy(pred, RECEIPT) == pytest.approx(1 - 11 / gt_weight)


def test_accuracy_is_clamped_at_zero() -> None:
    assert ted_accuracy({"x": "a very long wrong value", "y": "more", "z": "text"}, {"a": "b"}) == 0.0


# ---- Donut's conventions ----------------------------------------------------------------------------------


def test_keys_are_ordered_by_length_then_name() -> None:
    assert list(normalize({"bb": 1, "c": 1, "a": 1})) == ["a", "c", "bb"]


def test_key_order_of_the_prediction_does_not_matter() -> None:
    reordered = dict(reversed(list(RECEIPT.items())))
    assert ted_accuracy(reordered, RECEIPT) == 1.0


def test_list_order_matters() -> None:
    pred = copy.deepcopy(RECEIPT)
    pred["items"].reverse()
    assert ted_accuracy(pred, RECEIPT) < 1.0
    assert not perfect_match(pred, RECEIPT)


def test_empty_values_are_dropped() -> None:
    pred = copy.deepcopy(RECEIPT) | {"tip": None, "memo": "", "tags": [], "extra": {}, "void": False, "n": 0}
    assert normalize(pred) == normalize(RECEIPT)
    assert ted_accuracy(pred, RECEIPT) == 1.0
    assert field_f1([pred], [RECEIPT]) == 1.0


def test_scalars_become_stripped_strings() -> None:
    assert normalize({"q": 2, "p": " 1.5 ", "ok": True}) == {"p": ["1.5"], "q": ["2"], "ok": ["True"]}
    assert ted_accuracy({"q": 2}, {"q": "2"}) == 1.0


def test_value_lists_keep_strings_and_numbers_only() -> None:
    assert normalize({"tags": ["a", 1, None, True, [2], " "]}) == {"tags": ["a", "1"]}


def test_tree_shape_follows_donut() -> None:
    tree = build_tree(normalize({"menu": [{"nm": "cake", "cnt": 2}], "total": "9"}))
    menu = tree.children[0]
    assert [node.label for node in tree.children] == ["menu", "total"]
    assert [node.label for node in menu.children] == ["<subtree>"]
    assert [node.label for node in menu.children[0].children] == ["nm", "cnt"]
    assert [leaf.label for leaf in menu.children[0].children[0].children] == ["<leaf>cake"]


def test_f1_is_micro_averaged_over_key_value_pairs() -> None:
    # doc 1: 1 right, 1 wrong (1 fp + 1 fn); doc 2: 2 right; doc 3: 1 missing (fn)
    preds = [{"a": "x", "b": "z"}, {"a": "x", "b": "y"}, {}]
    gts = [{"a": "x", "b": "y"}, {"a": "x", "b": "y"}, {"a": "x"}]
    true_positives, wrong = 3, 3
    assert field_f1(preds, gts) == pytest.approx(true_positives / (true_positives + wrong / 2))


def test_f1_counts_repeated_pairs_as_a_multiset() -> None:
    gt = {"items": [{"n": "x"}, {"n": "x"}]}
    assert flatten(normalize(gt)) == [("items.n", "x"), ("items.n", "x")]
    assert field_f1([{"items": [{"n": "x"}]}], [gt]) == pytest.approx(1 / (1 + 1 / 2))


def test_f1_with_nothing_to_count_is_one() -> None:
    assert field_f1([{}], [{}]) == 1.0


def test_empty_ground_truth() -> None:
    assert ted_accuracy({}, {}) == 1.0
    assert ted_accuracy({"a": "b"}, {}) == 0.0


# ---- per-type aggregate -----------------------------------------------------------------------------------


def test_an_unparsed_prediction_counts_as_a_miss_everywhere() -> None:
    score = score_documents([copy.deepcopy(RECEIPT), None], [RECEIPT, RECEIPT])
    assert (score.documents, score.parsed, score.parse_rate) == (2, 1, 0.5)
    assert score.perfect_match_rate == 0.5
    assert score.ted_accuracy == 1.0 and score.f1 == 1.0  # over parsed documents only
    assert score.effective_ted_accuracy == 0.5 and score.effective_f1 == 0.5
    assert score.table6 == pytest.approx(0.5)


def test_table6_is_the_mean_of_the_three_effective_scores() -> None:
    pred = {"a": "abd", "b": "de"}
    score = score_documents([pred], [{"a": "abc", "b": "de"}])
    assert score.perfect_match_rate == 0.0
    expected = (0.0 + (1 - 1 / 7) + field_f1([pred], [{"a": "abc", "b": "de"}])) / 3
    assert score.table6 == pytest.approx(expected)


# ---- properties -------------------------------------------------------------------------------------------

keys = st.text(alphabet="abkxy_", min_size=1, max_size=3)
scalars = st.none() | st.booleans() | st.integers(-3, 30) | st.text(alphabet="ab 1.", max_size=4)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(keys, inner, max_size=3),
    max_leaves=10,
)
documents = st.dictionaries(keys, values, max_size=4)


@st.composite
def prediction_pairs(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any]]:
    gt = draw(documents)
    pred = draw(st.one_of(documents, st.just(copy.deepcopy(gt)), st.just(dict(reversed(list(gt.items()))))))
    return pred, gt


@settings(max_examples=300, deadline=None)
@given(prediction_pairs())
def test_accuracy_is_in_unit_range_and_one_exactly_for_equal_trees(pair: tuple[dict, dict]) -> None:
    pred, gt = pair
    score = ted_accuracy(pred, gt)
    assert 0.0 <= score <= 1.0
    trees_equal = build_tree(normalize(pred)).signature == build_tree(normalize(gt)).signature
    assert (score == 1.0) == trees_equal
    assert perfect_match(pred, gt) == (normalize(pred) == normalize(gt))


@settings(max_examples=300, deadline=None)
@given(documents, documents)
def test_reductions_give_the_plain_apted_distance(first: dict, second: dict) -> None:
    a, b = build_tree(normalize(first)), build_tree(normalize(second))
    plain = APTED(a, b, scoring._COSTS).compute_edit_distance()
    assert tree_edit_distance(a, b) == plain


@settings(max_examples=200, deadline=None)
@given(prediction_pairs())
def test_reductions_are_exact_on_near_identical_documents(pair: tuple[dict, dict]) -> None:
    pred, gt = pair
    shared = {"shared": [{"k": "same"}, {"k": "also"}]}
    a, b = build_tree(normalize(pred | shared)), build_tree(normalize(gt | shared))
    assert tree_edit_distance(a, b) == APTED(a, b, scoring._COSTS).compute_edit_distance()


item_lists = st.lists(st.dictionaries(keys, scalars, min_size=1, max_size=3), min_size=1, max_size=6)


@settings(max_examples=300, deadline=None)
@given(item_lists, documents, st.data())
def test_reductions_are_exact_when_a_list_differs_in_one_place(
    items: list, rest: dict, data: st.DataObject
) -> None:
    changed = copy.deepcopy(items)
    where = data.draw(st.integers(0, len(items) - 1))
    edit = data.draw(st.sampled_from(["replace", "delete", "insert"]))
    if edit == "delete":
        del changed[where]
    else:
        new_item = data.draw(st.dictionaries(keys, scalars, min_size=1, max_size=3))
        changed[where : where + (edit == "replace")] = [new_item]
    a, b = build_tree(normalize(rest | {"items": changed})), build_tree(normalize(rest | {"items": items}))
    assert tree_edit_distance(a, b) == APTED(a, b, scoring._COSTS).compute_edit_distance()


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="ab<leaf>", max_size=8), st.text(alphabet="ab<leaf>", max_size=8))
def test_costs_meet_the_condition_the_reductions_rely_on(first: str, second: str) -> None:
    a, b = scoring.TreeNode(first), scoring.TreeNode(second)
    assert abs(a.cost - b.cost) <= scoring.rename_cost(a, b)
    assert scoring.rename_cost(a, a) == 0


@settings(max_examples=100, deadline=None)
@given(documents)
def test_distance_from_the_empty_tree_is_the_insertion_cost(gt: dict) -> None:
    tree = build_tree(normalize(gt))
    empty = build_tree(normalize({}))
    assert APTED(empty, tree, scoring._COSTS).compute_edit_distance() == scoring.insertion_cost(tree)


# ---- bounded cost (a review's score) ----------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(documents, documents)
def test_the_top_down_alignment_is_never_below_the_true_distance(first: dict, second: dict) -> None:
    a, b = build_tree(normalize(first)), build_tree(normalize(second))
    plain = APTED(a, b, scoring._COSTS).compute_edit_distance()
    assert scoring.top_down_distance(a, b) >= plain
    # past any budget the accuracy is approximate, and never above the exact one
    bounded = ted_score(first, second, max_product=1)
    assert bounded.accuracy <= ted_accuracy(first, second)
    if bounded.exact:  # the exact reductions left APTED nothing to do
        assert bounded.accuracy == ted_accuracy(first, second)


def test_within_the_budget_the_score_is_the_exact_one() -> None:
    pred = copy.deepcopy(RECEIPT) | {"total": "12.05", "items": [{"description": "TEA"}]}
    score = ted_score(pred, RECEIPT)
    assert score.exact and score.accuracy == ted_accuracy(pred, RECEIPT) < 1


def _receipt(lines: int, word: str) -> dict:
    return RECEIPT | {
        "items": [
            {"description": f"{word} {n}", "quantity": n + 1, "total_price": f"{n}.50"} for n in range(lines)
        ]
    }


def test_a_review_that_rewrites_a_long_receipt_is_scored_within_the_budget() -> None:
    """Two 100-line receipts that differ on every line: about a minute of APTED; the budget aligns them
    top-down in well under a second of work (a few seconds' room for a busy machine)."""
    pred, gt = _receipt(100, "line"), _receipt(100, "other")
    a, b = build_tree(normalize(pred)), build_tree(normalize(gt))
    assert a.size() * b.size() > scoring.REVIEW_BUDGET
    started = time.monotonic()
    score = ted_score(pred, gt)
    assert time.monotonic() - started < 5
    assert not score.exact and 0.0 < score.accuracy < 1.0
    # the descriptions differ in their first word only: the lines align one to one, the rest is kept
    only_words = 1 - 100 * scoring.levenshtein("line", "other") / scoring.insertion_cost(b)
    assert score.accuracy == pytest.approx(only_words)


# ---- the same figures as Donut's zss-based evaluator ------------------------------------------------------

zss = pytest.importorskip("zss")


def _donut_style_accuracy(pred: dict, gt: dict) -> float:
    """Donut's cal_acc procedure, rebuilt on zss as the reference: two distances, nothing cached."""

    def tree(data: Any, label: str = "<root>") -> Any:
        node = zss.Node(label)
        if isinstance(data, dict):
            for key, value in data.items():
                node.addkid(tree(value, key))
        elif all(isinstance(item, dict) for item in data):
            for item in data:
                node.addkid(tree(item, "<subtree>"))
        else:
            for item in data:
                node.addkid(zss.Node(f"<leaf>{item}"))
        return node

    def size(node: Any) -> int:
        return len(node.label.replace("<leaf>", "")) if "<leaf>" in node.label else 1

    def rename(a: Any, b: Any) -> int:
        a_leaf, b_leaf = "<leaf>" in a.label, "<leaf>" in b.label
        if a_leaf and b_leaf:
            return scoring.levenshtein(a.label.replace("<leaf>", ""), b.label.replace("<leaf>", ""))
        if a_leaf or b_leaf:
            return 1 + size(a if a_leaf else b)
        return int(a.label != b.label)

    def distance(a: Any, b: Any) -> int:
        return zss.distance(a, b, zss.Node.get_children, size, size, rename)

    answer = tree(normalize(gt))
    return max(0, 1 - distance(tree(normalize(pred)), answer) / distance(tree({}), answer))


@settings(max_examples=150, deadline=None)
@given(prediction_pairs())
def test_accuracy_matches_donut_procedure_on_zss(pair: tuple[dict, dict]) -> None:
    pred, gt = pair
    if not normalize(gt):
        return  # Donut divides by zero there
    assert ted_accuracy(pred, gt) == pytest.approx(_donut_style_accuracy(pred, gt), abs=1e-12)
