"""Tiling must match the published InternVL / H2OVL preprocessing tile for tile.

Expected grids and counts in TABLE were worked out by hand from the published rules (see the comments on
each row); `reference_tiles` below is a deliberately naive re-implementation (per-tile crops in loops) that
the fast code is cross-checked against.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from extractor.tiling import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    candidate_grids,
    pixel_values,
    plan_tiles,
    tile_counts,
    tile_image,
)
from tests.imaging import noise

# (width, height, grid without MSAC, tiles without MSAC, (pass-1 grid, pass-2 grid), tiles with MSAC)
TABLE = [
    # aspect 0.25 = 1/4 exactly -> (1,4): 4 + thumb. MSAC pass 2 needs cols not dividing 1 and rows not
    # dividing 4 among grids of 3..6 tiles: only (2,3). 6 + 4 + thumb.
    (600, 2400, (1, 4), 5, ((1, 4), (2, 3)), 11),
    # A4 at 200 dpi, aspect 0.707: (2,3)=0.667 beats (1,2)=0.5. Pass 2: cols not dividing 2, rows not
    # dividing 3 -> (3,2). 6 + 6 + thumb.
    (1654, 2339, (2, 3), 7, ((2, 3), (3, 2)), 13),
    # ID card, aspect 1.586: (3,2)=1.5 is closest. Pass 2: cols not dividing 3, rows not dividing 2 -> (2,3).
    (1012, 638, (3, 2), 7, ((3, 2), (2, 3)), 13),
    # Square and tiny: (1,1) and (2,2) tie at diff 0, but 100 px is not > half of 4 tiles' area, so (1,1),
    # one tile, no thumbnail. Pass 2 wants cols and rows >= 2 -> (2,2). The single pass-1 tile is dropped
    # by the published [:-1]: 4 + 0 + thumb.
    (10, 10, (1, 1), 1, ((1, 1), (2, 2)), 5),
    (448, 448, (1, 1), 1, ((1, 1), (2, 2)), 5),
    # Same tie, but 1000*1000 > 0.5*448*448*4 so (2,2) wins: 4 + thumb. Pass 2 needs odd cols and rows >= 3:
    # none within 6 tiles, so it falls back to (1,1): 0 + 4 + that single tile.
    (1000, 1000, (2, 2), 5, ((2, 2), (1, 1)), 5),
    # Aspect 6 exactly -> (6,1). Pass 2: cols in {4,5} and rows >= 2 is over 6 tiles -> (1,1): 0 + 6 + 1.
    (3000, 500, (6, 1), 7, ((6, 1), (1, 1)), 7),
    # Aspect 0.05: (1,6)=0.167 is the closest. Pass 2: rows in {4,5} with cols >= 2 is over 6 tiles -> (1,1).
    (300, 6000, (1, 6), 7, ((1, 6), (1, 1)), 7),
]


# --- an independent, straightforward re-implementation of the published algorithm -----------------------


def reference_ratios(min_num: int, max_num: int) -> list[tuple[int, int]]:
    found = set()
    for n in range(min_num, max_num + 1):
        for i in range(1, n + 1):
            for j in range(1, n + 1):
                if i * j <= max_num and i * j >= min_num:
                    found.add((i, j))
    return sorted(found, key=lambda r: r[0] * r[1])


def reference_closest(aspect: float, ratios: list, width: int, height: int, size: int) -> tuple[int, int]:
    best_diff = float("inf")
    best = (1, 1)
    for r in ratios:
        diff = abs(aspect - r[0] / r[1])
        if diff < best_diff:
            best_diff = diff
            best = r
        elif diff == best_diff and width * height > 0.5 * size * size * r[0] * r[1]:
            best = r
    return best


def reference_preprocess(image: Image.Image, ratios: list, size: int, thumbnail: bool) -> tuple[list, tuple]:
    w, h = image.size
    grid = reference_closest(w / h, ratios, w, h, size)
    resized = image.resize((size * grid[0], size * grid[1]))
    out = []
    for row in range(grid[1]):
        for col in range(grid[0]):
            out.append(resized.crop((col * size, row * size, (col + 1) * size, (row + 1) * size)))
    if thumbnail and len(out) != 1:
        out.append(image.resize((size, size)))
    return out, grid


def reference_tiles(image: Image.Image, size: int, lo: int, hi: int, thumbnail: bool, msac: bool) -> list:
    if not msac:
        return reference_preprocess(image, reference_ratios(lo, hi), size, thumbnail)[0]
    first, grid = reference_preprocess(image, reference_ratios(1, hi), size, True)
    ratios = [r for r in reference_ratios(3, hi) if grid[0] % r[0] != 0 and grid[1] % r[1] != 0]
    second, _ = reference_preprocess(image, ratios, size, True)
    return second[:-1] + first[:-1] + [second[-1]]


def reference_normalise(tile: Image.Image) -> torch.Tensor:
    array = np.asarray(tile, dtype=np.float32) / 255.0
    array = (array - np.array(IMAGENET_MEAN, dtype=np.float32)) / np.array(IMAGENET_STD, dtype=np.float32)
    return torch.from_numpy(array.transpose(2, 0, 1).copy())


# --- planning ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("width", "height", "grid", "count", "msac_grids", "msac_count"), TABLE)
def test_plan_matches_hand_computed_table(width, height, grid, count, msac_grids, msac_count) -> None:
    plain = plan_tiles(width, height)
    assert plain.grids == (grid,)
    assert plain.num_tiles == count
    assert plain.has_thumbnail == (count > 1)
    msac = plan_tiles(width, height, use_msac=True)
    assert msac.grids == msac_grids
    assert msac.num_tiles == msac_count
    assert msac.num_image_tokens == msac_count * 256


@pytest.mark.parametrize(("width", "height"), [(row[0], row[1]) for row in TABLE])
@pytest.mark.parametrize("msac", [False, True])
def test_tiles_equal_reference_implementation(width: int, height: int, msac: bool) -> None:
    image = noise(width, height, seed=0)
    ours = tile_image(image, use_msac=msac)
    theirs = reference_tiles(image, 448, 1, 6, True, msac)
    assert len(ours) == len(theirs) == plan_tiles(width, height, use_msac=msac).num_tiles
    for mine, expected in zip(ours, theirs, strict=True):
        assert mine.size == (448, 448)
        assert np.array_equal(np.asarray(mine), np.asarray(expected))


def test_candidate_order_is_the_published_one() -> None:
    assert candidate_grids(1, 6) == reference_ratios(1, 6)
    # Literal, so a change in how the set is built (and hence tie order) cannot go unnoticed.
    assert candidate_grids(1, 4) == [(1, 1), (1, 2), (2, 1), (3, 1), (1, 3), (4, 1), (1, 4), (2, 2)]


def test_boxes_of_an_id_card_literally() -> None:
    plan = plan_tiles(1012, 638)
    assert [tile.box for tile in plan.tiles] == [
        (0, 0, 448, 448),
        (448, 0, 896, 448),
        (896, 0, 1344, 448),
        (0, 448, 448, 896),
        (448, 448, 896, 896),
        (896, 448, 1344, 896),
        (0, 0, 448, 448),
    ]
    assert [tile.grid for tile in plan.tiles] == [(3, 2)] * 6 + [(1, 1)]
    assert [tile.thumbnail for tile in plan.tiles] == [False] * 6 + [True]


def test_msac_order_puts_second_pass_first_and_thumbnail_last() -> None:
    plan = plan_tiles(1654, 2339, use_msac=True)
    assert [(tile.grid, tile.index) for tile in plan.tiles] == (
        [((3, 2), k) for k in range(6)] + [((2, 3), k) for k in range(6)] + [((1, 1), 0)]
    )
    assert plan.tiles[-1].thumbnail


def test_msac_with_empty_second_pass_ends_on_the_fallback_tile() -> None:
    plan = plan_tiles(3000, 500, use_msac=True)
    assert plan.grids[1] == (1, 1)
    assert [(tile.grid, tile.index) for tile in plan.tiles] == [((6, 1), k) for k in range(6)] + [((1, 1), 0)]
    assert not plan.has_thumbnail


def test_min_tiles_is_honoured() -> None:
    # With one tile forbidden, a square image takes the exact (2,2) grid rather than (1,1).
    assert plan_tiles(448, 448, min_tiles=2).grids == ((2, 2),)
    for width, height, *_ in TABLE:
        plan = plan_tiles(width, height, min_tiles=3, max_tiles=6)
        cols, rows = plan.grids[0]
        assert 3 <= cols * rows <= 6


def test_max_tiles_is_honoured() -> None:
    assert plan_tiles(600, 2400, max_tiles=2).grids == ((1, 2),)
    assert plan_tiles(600, 2400, max_tiles=2).num_tiles == 3
    # Allowed more tiles, a very tall strip goes to (1,12): 1/12 is closer to 0.05 than 1/6.
    assert plan_tiles(300, 6000, max_tiles=12).grids == ((1, 12),)
    assert plan_tiles(300, 6000, max_tiles=12).num_tiles == 13
    assert plan_tiles(3000, 500, max_tiles=1).num_tiles == 1


def test_thumbnail_can_be_switched_off() -> None:
    plan = plan_tiles(1654, 2339, use_thumbnail=False)
    assert plan.num_tiles == 6
    assert not plan.has_thumbnail


@pytest.mark.parametrize(("args", "message"), [((0, 10), "positive"), ((10, -1), "positive")])
def test_degenerate_sizes_are_rejected(args: tuple[int, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        plan_tiles(*args)


def test_inverted_tile_bounds_are_rejected() -> None:
    with pytest.raises(ValueError, match="min_tiles"):
        plan_tiles(100, 100, min_tiles=4, max_tiles=2)


@settings(max_examples=300, deadline=None)
@given(
    width=st.integers(1, 20_000),
    height=st.integers(1, 20_000),
    max_tiles=st.integers(1, 12),
    thumbnail=st.booleans(),
)
def test_count_is_bounded_and_grid_matches_reference(
    width: int, height: int, max_tiles: int, thumbnail: bool
) -> None:
    plan = plan_tiles(width, height, max_tiles=max_tiles, use_thumbnail=thumbnail)
    assert 1 <= plan.num_tiles <= max_tiles + 1
    expected = reference_closest(width / height, reference_ratios(1, max_tiles), width, height, 448)
    assert plan.grids == (expected,)
    cols, rows = expected
    assert plan.num_tiles == cols * rows + (1 if thumbnail and cols * rows > 1 else 0)


# --- pixels -----------------------------------------------------------------------------------------------


def test_white_image_normalises_to_known_values() -> None:
    values = pixel_values(Image.new("RGB", (900, 450), "white"))
    assert values.shape == (3, 3, 448, 448)  # (2,1) grid + thumbnail
    assert values.dtype == torch.float32
    for channel in range(3):
        expected = (1.0 - IMAGENET_MEAN[channel]) / IMAGENET_STD[channel]
        assert torch.allclose(values[:, channel], torch.full_like(values[:, channel], expected), atol=1e-6)


@pytest.mark.parametrize(
    ("width", "height", "msac"), [(1654, 2339, True), (1012, 638, False), (70, 300, True)]
)
def test_fast_path_equals_tile_image_then_normalise(width: int, height: int, msac: bool) -> None:
    image = noise(width, height, seed=width)
    expected = torch.stack([reference_normalise(tile) for tile in tile_image(image, use_msac=msac)])
    actual = pixel_values(image, use_msac=msac)
    assert actual.shape == expected.shape
    assert torch.allclose(actual, expected, atol=1e-6, rtol=0)


def test_fast_path_with_small_tiles_and_many_grids() -> None:
    for seed, (width, height) in enumerate([(50, 400), (333, 97), (64, 64), (200, 201)]):
        image = noise(width, height, seed=seed)
        for msac in (False, True):
            tiles = tile_image(image, image_size=28, max_tiles=12, use_msac=msac)
            expected = torch.stack([reference_normalise(tile) for tile in tiles])
            actual = pixel_values(image, image_size=28, max_tiles=12, use_msac=msac)
            assert torch.allclose(actual, expected, atol=1e-6, rtol=0)


def test_several_images_never_use_msac() -> None:
    front, back = noise(1012, 638, seed=1), noise(1012, 638, seed=2)
    assert tile_counts([front, back], use_msac=True) == [7, 7]
    assert tile_counts([front], use_msac=True) == [13]
    values = pixel_values([front, back], use_msac=True)
    assert values.shape[0] == 14
    expected = torch.cat([pixel_values(front), pixel_values(back)])
    assert torch.equal(values, expected)


def test_non_rgb_input_is_converted() -> None:
    grey = Image.new("L", (448, 448), 255)
    assert tile_image(grey)[0].mode == "RGB"
    assert torch.equal(pixel_values(grey), pixel_values(Image.new("RGB", (448, 448), "white")))
