"""Planning page sizes before anything is rendered: every page under the page cap, the document within its
budget, as pdftoppm rounds (each side up), and never above the asked resolution."""

from __future__ import annotations

import math
import random

import pytest

from extractor.errors import InputError
from extractor.pixel_budget import pdf_page_dpis, raster_scale, scaled_size


def test_planned_pages_fit_both_limits_as_poppler_rounds_them() -> None:
    rng = random.Random(15)
    for _ in range(2000):
        sizes = [(rng.uniform(0.2, 200), rng.uniform(0.2, 200)) for _ in range(rng.randint(1, 20))]
        cap = rng.choice([100_000, 1_000_000, 89_478_485])
        budget = rng.choice([1_000_000, 20_000_000, 100_000_000])
        try:
            dpis = pdf_page_dpis(sizes, dpi=200, max_pixels=cap, max_document_pixels=budget)
        except InputError as refused:
            assert refused.code == "too_many_pixels"
            continue
        pixels = [math.ceil(w * d) * math.ceil(h * d) for (w, h), d in zip(sizes, dpis, strict=True)]
        assert max(pixels) <= cap and sum(pixels) <= budget and max(dpis) <= 200


def test_pages_within_the_limits_keep_the_asked_resolution() -> None:
    letter = (8.5, 11.0)
    assert (
        pdf_page_dpis([letter] * 20, dpi=200, max_pixels=89_478_485, max_document_pixels=100_000_000)
        == [200] * 20
    )


def test_one_factor_for_the_whole_document() -> None:
    dpis = pdf_page_dpis([(47.2, 47.2)] * 20, dpi=200, max_pixels=89_478_485, max_document_pixels=100_000_000)
    assert len(set(dpis)) == 1 and 47 < dpis[0] < 48  # 20 pages of 3,400 pt: ~2,236 px a side, not 9,445


def test_a_page_that_would_lose_a_side_is_refused() -> None:
    with pytest.raises(InputError) as refused:
        pdf_page_dpis([(200.0, 0.05)], dpi=200, max_pixels=100_000, max_document_pixels=100_000_000)
    assert refused.value.code == "too_many_pixels"


def test_raster_scale() -> None:
    assert raster_scale([(1000, 1000)], 2_000_000) == 1.0
    factor = raster_scale([(1000, 1000), (1000, 1000)], 500_000)
    assert scaled_size((1000, 1000), factor) == (500, 500)
    with pytest.raises(InputError) as refused:
        raster_scale([(1000, 1000), (1000, 10)], 100_000)
    assert refused.value.code == "too_many_pixels"
    with pytest.raises(InputError):
        raster_scale([(100, 100)], 0)  # nothing left for this file
