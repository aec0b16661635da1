"""Benchmark: extractor.scoring.ted_accuracy against a zss scorer that follows Donut's procedure.

Both score the same deterministic pairs (a synthetic receipt with N line items, and a prediction carrying
realistic model errors: character slips, a dropped or repeated line, a missing field) with the same
normalisation, tree and costs. The zss scorer does what Donut's `cal_acc` does: two `zss.distance` calls
per pair, TED(pred, gt) and TED(empty, gt), with nothing cached. Ours runs APTED after exact reductions,
with the ground truth's tree and TED(empty, gt) cached.

    python bench/scoring.py [--pairs 1000] [--items 30] [--zss-pairs 100] [--seed 7]

zss takes seconds per pair, so it is timed on the first --zss-pairs pairs only (all 1,000 would take over an
hour); the speed ratio compares the two on those same pairs, and every zss score is checked against ours.
"""

from __future__ import annotations

import argparse
import copy
import platform
import random
import string
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import zss  # noqa: E402 - a dev dependency, after the path set-up

from extractor import scoring  # noqa: E402

WORDS = (
    "rice chicken milk bread apple tea coffee sugar salt soap tissue juice eggs flour oil noodle fish beef "
    "onion garlic butter cheese yogurt cereal water soda chips candy pepper sauce lamp cable bag pen"
).split()


# ---- deterministic pairs ----------------------------------------------------------------------------------


def make_receipt(rng: random.Random, items: int) -> dict[str, Any]:
    lines = [_line(rng) for _ in range(items)]
    subtotal = sum(float(line["total_price"]) for line in lines)
    tax = round(subtotal * 0.06, 2)
    return {
        "merchant_name": f"{rng.choice(WORDS).upper()} {rng.choice(['MART', 'STORE', 'CAFE'])} SDN BHD",
        "merchant_address": f"{rng.randint(1, 999)}, JALAN {rng.choice(WORDS).upper()}, {rng.randint(10000, 99999)}",
        "merchant_phone": f"03-{rng.randint(1000, 9999)} {rng.randint(1000, 9999)}",
        "transaction_date": f"2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
        "transaction_time": f"{rng.randint(8, 21):02d}:{rng.randint(0, 59):02d}",
        "receipt_number": f"INV{rng.randint(100000, 999999)}",
        "currency": "MYR",
        "items": lines,
        "subtotal": f"{subtotal:.2f}",
        "tax": f"{tax:.2f}",
        "tip": None,
        "total": f"{subtotal + tax:.2f}",
        "payment_method": rng.choice(["cash", "credit_card", "debit_card"]),
    }


def _line(rng: random.Random) -> dict[str, Any]:
    quantity = rng.randint(1, 4)
    unit = rng.randint(50, 5000) / 100
    name = " ".join(rng.choice(WORDS).upper() for _ in range(rng.randint(1, 3)))
    return {
        "description": f"{name} {rng.randint(100, 999)}G",
        "quantity": quantity,
        "unit_price": f"{unit:.2f}",
        "total_price": f"{quantity * unit:.2f}",
    }


def make_prediction(rng: random.Random, gt: dict[str, Any]) -> dict[str, Any]:
    """The ground truth with the errors a small vision-language model makes, at rates seen in practice."""
    pred = copy.deepcopy(gt)
    for key, value in pred.items():
        if isinstance(value, str) and rng.random() < 0.05:
            pred[key] = _slip(rng, value)
        elif value is not None and key not in {"merchant_name", "items", "total"} and rng.random() < 0.03:
            pred[key] = None
    lines = []
    for line in pred["items"]:
        roll = rng.random()
        if roll < 0.02:
            continue  # a line the model skipped
        if roll < 0.03:
            lines.append(copy.deepcopy(line))  # a line the model repeated
        lines.append(
            {k: _slip(rng, v) if isinstance(v, str) and rng.random() < 0.04 else v for k, v in line.items()}
        )
    pred["items"] = lines
    return pred


def _slip(rng: random.Random, text: str) -> str:
    if not text:
        return text
    where = rng.randrange(len(text))
    kind = rng.choice(["substitute", "delete", "insert"])
    char = rng.choice(string.ascii_uppercase + string.digits)
    if kind == "substitute":
        return text[:where] + char + text[where + 1 :]
    if kind == "delete":
        return text[:where] + text[where + 1 :]
    return text[:where] + char + text[where:]


def make_pairs(count: int, items: int, seed: int) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    rng = random.Random(seed)
    pairs = []
    for _ in range(count):
        gt = make_receipt(rng, items)
        pairs.append((make_prediction(rng, gt), gt))
    return pairs


# ---- the zss scorer (Donut's procedure) -------------------------------------------------------------------


def _zss_tree(normalized: Any, label: str = scoring.ROOT) -> zss.Node:
    node = zss.Node(label)
    if isinstance(normalized, dict):
        for key, value in normalized.items():
            node.addkid(_zss_tree(value, key))
    elif all(isinstance(item, dict) for item in normalized):
        for item in normalized:
            node.addkid(_zss_tree(item, scoring.SUBTREE))
    else:
        for item in normalized:
            node.addkid(zss.Node(f"{scoring.LEAF}{item}"))
    return node


def _zss_insert_cost(node: zss.Node) -> int:
    label = node.label
    return len(label.replace(scoring.LEAF, "")) if scoring.LEAF in label else 1


def _zss_update_cost(first: zss.Node, second: zss.Node) -> int:
    a, b = first.label, second.label
    a_leaf, b_leaf = scoring.LEAF in a, scoring.LEAF in b
    if a_leaf and b_leaf:
        return _plain_levenshtein(a.replace(scoring.LEAF, ""), b.replace(scoring.LEAF, ""))
    if a_leaf or b_leaf:
        return 1 + len((a if a_leaf else b).replace(scoring.LEAF, ""))
    return int(a != b)


_plain_levenshtein = scoring.levenshtein.__wrapped__  # uncached, as nltk's edit_distance in Donut


def _zss_distance(first: zss.Node, second: zss.Node) -> int:
    return zss.distance(
        first, second, zss.Node.get_children, _zss_insert_cost, _zss_insert_cost, _zss_update_cost
    )


def zss_ted_accuracy(pred: dict[str, Any], gt: dict[str, Any]) -> float:
    answer = _zss_tree(scoring.normalize(gt))
    distance = _zss_distance(_zss_tree(scoring.normalize(pred)), answer)
    return max(0.0, 1.0 - distance / _zss_distance(_zss_tree(scoring.normalize({})), answer))


# ---- timing -----------------------------------------------------------------------------------------------


def time_scorer(
    scorer: Callable[[dict[str, Any], dict[str, Any]], float],
    pairs: list[tuple[dict[str, Any], dict[str, Any]]],
) -> tuple[list[float], list[float]]:
    """CPU seconds per pair (this process only, so other load on the machine does not count) and the scores."""
    durations, scores = [], []
    for pred, gt in pairs:
        started = time.process_time()
        scores.append(scorer(pred, gt))
        durations.append(time.process_time() - started)
    return durations, scores


def _clear_caches() -> None:
    scoring._prepare_cached.cache_clear()
    scoring.levenshtein.cache_clear()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=1000)
    parser.add_argument("--items", type=int, default=30)
    parser.add_argument(
        "--zss-pairs", type=int, default=100, help="time zss on the first K pairs only (it is slow)"
    )
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    pairs = make_pairs(args.pairs, args.items, args.seed)
    zss_count = max(1, min(args.zss_pairs, args.pairs))
    nodes = sum(scoring.build_tree(scoring.normalize(gt)).size() for _, gt in pairs) / len(pairs)

    _clear_caches()
    ours_times, ours_scores = time_scorer(scoring.ted_accuracy, pairs)
    zss_times, zss_scores = time_scorer(zss_ted_accuracy, pairs[:zss_count])
    # the first K pairs of our run saw the same cold caches a run on those pairs alone would see
    ours_all, ours_subset, zss_subset = sum(ours_times), sum(ours_times[:zss_count]), sum(zss_times)
    worst = max(abs(a - b) for a, b in zip(ours_scores, zss_scores, strict=False))
    exact = sum(score == 1.0 for score in ours_scores)

    ratio = zss_subset / ours_subset
    print(
        f"pairs: {args.pairs} receipts x {args.items} line items (seed {args.seed}), {nodes:.0f} gt nodes each"
    )
    print(
        f"pairs identical after normalisation: {exact}; mean TED accuracy {sum(ours_scores) / len(pairs):.4f}"
    )
    print(f"ours (apted + reductions + caches): {ours_all:.2f} s for {args.pairs} pairs")
    print(f"on the first {zss_count} pairs: ours {ours_subset:.2f} s, zss {zss_subset:.2f} s")
    print(f"largest score difference ours vs zss: {worst:.3g}")
    print(f"speed ratio (zss / ours): {ratio:.1f}x")
    print()
    print(_markdown(args, nodes, ours_all, ours_subset, zss_subset, zss_count, ratio, worst))
    return 0


def _markdown(
    args: argparse.Namespace,
    nodes: float,
    ours_all: float,
    ours_subset: float,
    zss_subset: float,
    zss_count: int,
    ratio: float,
    worst: float,
) -> str:
    per_ours = 1000 * ours_subset / zss_count
    per_zss = 1000 * zss_subset / zss_count
    return "\n".join(
        [
            f"### TED scoring: {args.pairs} receipt pairs, {args.items} line items (`python bench/scoring.py`)",
            "",
            f"Python {platform.python_version()} on {platform.machine()}, seed {args.seed}, "
            f"~{nodes:.0f} nodes per ground-truth tree.",
            "",
            "| scorer | pairs timed | CPU total (s) | CPU per pair (ms) |",
            "| --- | ---: | ---: | ---: |",
            f"| ours: APTED + exact reductions + cached gt | {args.pairs} | {ours_all:.2f} | "
            f"{1000 * ours_all / args.pairs:.1f} |",
            f"| ours, same pairs as zss | {zss_count} | {ours_subset:.2f} | {per_ours:.1f} |",
            f"| zss, Donut's procedure | {zss_count} | {zss_subset:.2f} | {per_zss:.1f} |",
            "",
            f"Speed ratio zss / ours: **{ratio:.1f}x**; largest score difference {worst:.3g}.",
        ]
    )


if __name__ == "__main__":
    raise SystemExit(main())
