"""Benchmark: grounding on synthetic documents — OCR words, locating values, the value_on_page check.

    python bench/grounding.py [--dir DIR] [--count 60] [--seed 16] [--workers 2] [--one-pass] [--json out.json]

(`--json` also lists the misses and the correct values flagged.)

Makes (or reuses, when DIR already has a metadata.jsonl) a `bayou samples make` set: all three types, scans
and phone photos with blur, tilt and creases. Each document is rasterised as the CPU stage does (200 dpi),
every page OCRed (extractor/ocr.py, Tesseract, one thread each, `--workers` pages at once; `--one-pass`
without OCR's second pass at twice the size, to see what it costs and gives), then:

- localisation: the ground truth stands in for the extracted values (so this measures the locator, not a
  model); a value counts as located when its box has IoU >= 0.5 with the box `samples make` recorded;
- hallucination: each document's values are replaced one at a time by plausible wrong ones — another
  document's value of the same field (amounts, numbers), the date shifted by 1-40 days, a name or payee
  misspelt (a letter changed, dropped or two swapped) — and each must be flagged not on the page (the
  value_on_page check); the correct values must not be;
- barcode: each licence's AAMVA PDF417 decoded (extractor/grounding/barcode.py) and compared, every field,
  with the ground truth;
- cost: OCR (every pass: the page, at twice the size where unsure, the still-unsure words cut out) and
  locate milliseconds per page, barcode decoding per licence; the load average before and after, as the machine may be shared.

Prints the figures and a markdown block for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import time
from collections import Counter, defaultdict
from concurrent.futures import ProcessPoolExecutor
from datetime import date, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bayou.synthetic.dataset import make_dataset  # noqa: E402
from extractor.datasets import read_dataset  # noqa: E402
from extractor.grounding.barcode import read_licence_barcode  # noqa: E402
from extractor.grounding.locate import leaves, locate  # noqa: E402
from extractor.grounding.measure import iou  # noqa: E402
from extractor.grounding.verify import not_on_page  # noqa: E402
from extractor.ocr import ALL_STEPS, ONE_PASS, OcrSteps, PageWords, read_words  # noqa: E402
from extractor.pipeline import DocumentInput, Limits, rasterize_document  # noqa: E402

NAMES = ("/family_name", "/given_names", "/payee", "/payer_name", "/merchant_name", "/items/0/description")
DATES = ("/date", "/transaction_date", "/date_of_birth", "/issue_date", "/expiration_date")
SWAPPED = (
    "/total",
    "/subtotal",
    "/tax",
    "/amount_numeric",
    "/document_number",
    "/check_number",
    "/account_number",
    "/receipt_number",
    "/items/0/total_price",
    "/address/postal_code",
)


def _ocr(args: tuple[list[Path], str, OcrSteps]) -> tuple[list[dict[str, Any]], dict[str, Any] | None, float]:
    """Each page's words; a licence's barcode fields (None: not read) and the decoding milliseconds."""
    paths, doc_type, steps = args
    rasterized = rasterize_document(DocumentInput(sources=list(paths), doc_type=doc_type), Limits())
    assert rasterized.error is None, rasterized.error
    words = [read_words(image, steps=steps).to_json() for image in rasterized.images]
    if doc_type != "drivers_license":
        return words, None, 0.0
    started = time.perf_counter()
    barcode = read_licence_barcode(rasterized.images).fields
    return words, barcode, (time.perf_counter() - started) * 1000


def _set(data: Any, pointer: str, value: Any) -> Any:
    copy = json.loads(json.dumps(data))
    parts = pointer.strip("/").split("/")
    node = copy
    for part in parts[:-1]:
        node = node[int(part)] if isinstance(node, list) else node[part]
    if isinstance(node, list):
        node[int(parts[-1])] = value
    else:
        node[parts[-1]] = value
    return copy


def _get(data: Any, pointer: str) -> Any:
    node = data
    for part in pointer.strip("/").split("/"):
        if isinstance(node, list):
            index = int(part)
            if index >= len(node):
                return None
            node = node[index]
        elif isinstance(node, dict):
            node = node.get(part)
        else:
            return None
    return node


def misspell(text: str, rng: random.Random) -> str:
    letters = [i for i, ch in enumerate(text) if ch.isalpha()]
    i = rng.choice(letters)
    how = rng.choice(("change", "drop", "swap"))
    if how == "swap" and i + 1 < len(text) and text[i + 1].isalpha() and text[i + 1] != text[i]:
        return text[:i] + text[i + 1] + text[i] + text[i + 2 :]
    if how == "drop" and len(letters) > 3:
        return text[:i] + text[i + 1 :]
    pool = "ABCDEFGHIJKLMNOPQRSTUVWXYZ" if text[i].isupper() else "abcdefghijklmnopqrstuvwxyz"
    return text[:i] + rng.choice([c for c in pool if c != text[i]]) + text[i + 1 :]


def wrong_values(
    truth: dict[str, Any], others: list[dict[str, Any]], rng: random.Random
) -> list[tuple[str, str, Any]]:
    """(kind, pointer, wrong value) for this document."""
    wrong = []
    for pointer in NAMES:
        value = _get(truth, pointer)
        if isinstance(value, str) and sum(ch.isalpha() for ch in value) >= 3:
            wrong.append(("misspelt name", pointer, misspell(value, rng)))
    for pointer in DATES:
        value = _get(truth, pointer)
        if isinstance(value, str):
            shifted = date.fromisoformat(value) + timedelta(days=rng.choice((-1, 1)) * rng.randint(1, 40))
            wrong.append(("shifted date", pointer, shifted.isoformat()))
    for pointer in SWAPPED:
        value = _get(truth, pointer)
        pool = [v for v in (_get(o, pointer) for o in others) if v is not None and v != value]
        if value is not None and pool:
            wrong.append(("another document's value", pointer, rng.choice(pool)))
    return wrong


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dir", type=Path, default=Path("/tmp/bayou-grounding-set"))
    parser.add_argument("--count", type=int, default=60)
    parser.add_argument("--seed", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--one-pass", action="store_true", help="OCR without its second pass")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    if not (args.dir / "metadata.jsonl").is_file():
        started = time.perf_counter()
        make_dataset(args.dir, count=args.count, seed=args.seed)
        print(f"made {args.count} documents in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    entries = read_dataset(args.dir)
    load_before = os.getloadavg()
    started = time.perf_counter()
    with ProcessPoolExecutor(args.workers) as pool:
        jobs = [(list(e.paths), e.doc_type, ONE_PASS if args.one_pass else ALL_STEPS) for e in entries]
        ocr = list(pool.map(_ocr, jobs))
    ocr_wall = time.perf_counter() - started
    rng = random.Random(args.seed)

    located, total = Counter(), Counter()
    by_size_located, by_size_total = Counter(), Counter()
    misses: list[str] = []
    flagged, perturbed = Counter(), Counter()
    correct_flagged = correct_total = 0
    flagged_correct: list[str] = []
    ocr_ms, locate_ms, page_count, read_twice, read_alone = [], [], 0, 0, 0
    truths = defaultdict(list)
    for entry in entries:
        truths[entry.doc_type].append(entry.ground_truth)
    licences = [
        (entry, barcode, ms)
        for entry, (_, barcode, ms) in zip(entries, ocr, strict=True)
        if entry.doc_type == "drivers_license"
    ]
    decoded = [(entry, barcode) for entry, barcode, _ in licences if barcode is not None]
    barcode_equal = sum(barcode == entry.ground_truth for entry, barcode in decoded)
    for entry, (pages_json, _, _) in zip(entries, ocr, strict=True):
        pages = [PageWords.from_json(p) for p in pages_json]
        page_count += len(pages)
        ocr_ms += [p.ms for p in pages]
        read_twice += sum(p.passes >= 2 for p in pages)
        read_alone += sum(p.passes == 3 for p in pages)
        t0 = time.perf_counter()
        found = locate(entry.ground_truth, pages)
        locate_ms.append((time.perf_counter() - t0) * 1000 / len(pages))
        values = dict(leaves(entry.ground_truth))
        for pointer, where in entry.boxes.items():
            total[entry.doc_type] += 1
            got = found.get(pointer)
            ok = got is not None and got.page == where["page"] and iou(got.box, where["box"]) >= 0.5
            located[entry.doc_type] += ok
            # one-character values (a quantity "1", sex "F", class "C"): a 1-2 px difference in a glyph's
            # box moves IoU across 0.5, so they are counted apart too
            # (the value as looked for: a list of endorsements ["M"] is the one character "M")
            size = "one character" if len(str(values.get(pointer, ""))) == 1 else "longer"
            by_size_total[size] += 1
            by_size_located[size] += ok
            if not ok:
                misses.append(f"{entry.file_name}{pointer}")
        missing = set(not_on_page(entry.ground_truth, found))
        correct_total += len(values)
        correct_flagged += len(missing)
        flagged_correct.extend(f"{entry.file_name}{p}" for p in sorted(missing))
        others = [t for t in truths[entry.doc_type] if t is not entry.ground_truth]
        for kind, pointer, wrong in wrong_values(entry.ground_truth, others, rng):
            data = _set(entry.ground_truth, pointer, wrong)
            perturbed[kind] += 1
            flagged[kind] += pointer in not_on_page(data, locate(data, pages))

    figures = {
        "documents": len(entries),
        "pages": page_count,
        "located": {t: f"{located[t]}/{total[t]}" for t in total},
        "localisation": sum(located.values()) / max(1, sum(total.values())),
        "located_by_value_size": {k: f"{by_size_located[k]}/{by_size_total[k]}" for k in by_size_total},
        "wrong_flagged": {k: f"{flagged[k]}/{perturbed[k]}" for k in perturbed},
        "wrong_flagged_rate": sum(flagged.values()) / max(1, sum(perturbed.values())),
        "correct_flagged_rate": correct_flagged / max(1, correct_total),
        "correct_flagged": f"{correct_flagged}/{correct_total}",
        "ocr_ms_per_page_median": statistics.median(ocr_ms),
        "ocr_ms_per_page_mean": statistics.fmean(ocr_ms),
        "ocr_wall_s": round(ocr_wall, 1),
        "pages_read_twice": f"{read_twice}/{page_count}",
        "pages_with_words_reread_alone": f"{read_alone}/{page_count}",
        "load_average_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
        "locate_ms_per_page_median": statistics.median(locate_ms),
        "barcodes_decoded": f"{len(decoded)}/{len(licences)}",
        "barcodes_equal_to_ground_truth": f"{barcode_equal}/{len(decoded)}",
        "barcode_ms_per_licence_median": statistics.median([ms for _, _, ms in licences])
        if licences
        else None,
        "misses": misses,
        "correct_flagged_values": flagged_correct,
    }
    lists = ("misses", "correct_flagged_values")
    print(json.dumps({k: v for k, v in figures.items() if k not in lists}, indent=2))
    print("misses:", " ".join(misses[:60]), file=sys.stderr)
    print("correct values flagged:", " ".join(flagged_correct[:60]), file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    print(
        f"\n| {date.today()} | {platform.processor() or platform.machine()} | {len(entries)} docs / {page_count} pages"
        f" | {figures['localisation']:.1%} | {figures['wrong_flagged_rate']:.1%} | {figures['correct_flagged_rate']:.1%}"
        f" | {figures['ocr_ms_per_page_median']:.0f} | {figures['locate_ms_per_page_median']:.1f} |"
    )


if __name__ == "__main__":
    main()
