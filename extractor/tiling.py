"""Dynamic-resolution tiling as the H2OVL-Mississippi models were trained with it.

InternVL's scheme: pick the (cols, rows) grid whose aspect ratio is closest to the image's, resize the
whole image to that grid of `image_size` squares, cut the squares row-major and, when there is more than
one, append a thumbnail of the whole image. H2OVL-2B adds MSAC (multi-scale adaptive cropping): a second
grid that is not a sub-grid of the first, so the model sees the page at two scales.

Everything that decides *which* tiles exist is pure arithmetic (`plan_tiles`), so it can be tested without
pixels; `tile_image` and `pixel_values` only carry a plan out. Deviating from the published order or
tie-breaking by even one tile changes what the model sees, hence the care taken below to copy its quirks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

# Pass 2 of MSAC only considers grids of at least this many tiles (published constant).
MSAC_SECOND_PASS_MIN_TILES = 3

Grid = tuple[int, int]  # (cols, rows)
Box = tuple[int, int, int, int]  # (left, top, right, bottom) in the resized image


@dataclass(frozen=True)
class Tile:
    """One tile the model sees: cut `box` out of the image resized to `grid` squares."""

    grid: Grid
    index: int  # row-major position within its grid
    box: Box
    thumbnail: bool  # True for the whole-image thumbnail appended after a multi-tile grid


@dataclass(frozen=True)
class TilePlan:
    width: int
    height: int
    image_size: int
    msac: bool
    grids: tuple[Grid, ...]  # the grid chosen by each pass: one without MSAC, two with it
    tiles: tuple[Tile, ...]  # in the model's order

    @property
    def num_tiles(self) -> int:
        return len(self.tiles)

    @property
    def has_thumbnail(self) -> bool:
        return any(tile.thumbnail for tile in self.tiles)

    @property
    def num_image_tokens(self) -> int:
        # 14-px patches, then a 0.5 pixel shuffle: 448 px -> 32 x 32 patches -> 16 x 16 = 256 tokens a tile.
        return self.num_tiles * (self.image_size // 28) ** 2


def candidate_grids(min_num: int, max_num: int) -> list[Grid]:
    """Grids with between min_num and max_num tiles, in the published order.

    The published code builds a *set* and sorts it by tile count only; grids with equal counts keep the
    set's iteration order, and the closest-ratio search breaks ties by that order. Building the same set
    the same way reproduces it (CPython hashes small int tuples deterministically).
    """
    grids = {
        (i, j)
        for n in range(min_num, max_num + 1)
        for i in range(1, n + 1)
        for j in range(1, n + 1)
        if min_num <= i * j <= max_num
    }
    return sorted(grids, key=lambda grid: grid[0] * grid[1])


def closest_grid(width: int, height: int, candidates: Sequence[Grid], image_size: int) -> Grid:
    """The candidate whose cols/rows ratio is closest to width/height, as published.

    On an exact tie the later candidate wins only if the image has more than half the pixels of that
    grid; an empty candidate list yields (1, 1).
    """
    aspect = width / height
    area = width * height
    best_diff = float("inf")
    best: Grid = (1, 1)
    for grid in candidates:
        diff = abs(aspect - grid[0] / grid[1])
        if diff < best_diff:
            best_diff, best = diff, grid
        elif diff == best_diff and area > 0.5 * image_size * image_size * grid[0] * grid[1]:
            best = grid
    return best


def grid_tiles(grid: Grid, image_size: int, *, use_thumbnail: bool) -> list[Tile]:
    """The tiles one pass of the published algorithm emits for `grid`."""
    cols, rows = grid
    tiles = [
        Tile(
            grid=grid,
            index=k,
            box=(
                (k % cols) * image_size,
                (k // cols) * image_size,
                (k % cols + 1) * image_size,
                (k // cols + 1) * image_size,
            ),
            thumbnail=False,
        )
        for k in range(cols * rows)
    ]
    if use_thumbnail and len(tiles) != 1:
        # The thumbnail is the original image resized to one square, i.e. the single tile of grid (1, 1).
        tiles.append(Tile(grid=(1, 1), index=0, box=(0, 0, image_size, image_size), thumbnail=True))
    return tiles


def _check_arguments(width: int, height: int, image_size: int, min_tiles: int, max_tiles: int) -> None:
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    if image_size <= 0:
        raise ValueError(f"image_size must be positive, got {image_size}")
    if not 1 <= min_tiles <= max_tiles:
        raise ValueError(f"need 1 <= min_tiles <= max_tiles, got {min_tiles} and {max_tiles}")


def plan_tiles(
    width: int,
    height: int,
    *,
    image_size: int = 448,
    min_tiles: int = 1,
    max_tiles: int = 6,
    use_thumbnail: bool = True,
    use_msac: bool = False,
) -> TilePlan:
    """Which tiles the model sees for a width x height image, without touching pixels."""
    _check_arguments(width, height, image_size, min_tiles, max_tiles)
    if not use_msac:
        grid = closest_grid(width, height, candidate_grids(min_tiles, max_tiles), image_size)
        tiles = grid_tiles(grid, image_size, use_thumbnail=use_thumbnail)
        return TilePlan(width, height, image_size, False, (grid,), tuple(tiles))

    # MSAC, as vLLM's H2OVL reimplements it. Both passes force the thumbnail on and ignore min_tiles.
    first = closest_grid(width, height, candidate_grids(1, max_tiles), image_size)
    first_tiles = grid_tiles(first, image_size, use_thumbnail=True)
    # Keep only grids that are not sub-grids of the first; this can leave nothing (e.g. a 1x6 first
    # grid), and then the search falls back to (1, 1) like the published code does.
    candidates = [
        grid
        for grid in candidate_grids(MSAC_SECOND_PASS_MIN_TILES, max_tiles)
        if first[0] % grid[0] != 0 and first[1] % grid[1] != 0
    ]
    second = closest_grid(width, height, candidates, image_size)
    second_tiles = grid_tiles(second, image_size, use_thumbnail=True)
    # Published order: second pass minus its last, first pass minus its last, second pass's last. The
    # `[:-1]` assumes a thumbnail ends each pass; a single-tile pass has none, so its only tile is dropped
    # there (and for the second pass, comes back as "the last element"). Reproduced on purpose.
    tiles = second_tiles[:-1] + first_tiles[:-1] + second_tiles[-1:]
    return TilePlan(width, height, image_size, True, (first, second), tuple(tiles))


def _resized(image: Image.Image, grid: Grid, image_size: int) -> Image.Image:
    # Default resampling of Image.resize (bicubic for RGB), exactly what the published code calls.
    return image.resize((image_size * grid[0], image_size * grid[1]))


def _as_rgb(image: Image.Image) -> Image.Image:
    # The published transform converts each tile to RGB after resizing; our images arrive RGB from
    # extractor.images, so converting first only matters for odd callers and keeps one code path.
    return image if image.mode == "RGB" else image.convert("RGB")


def tile_image(
    image: Image.Image,
    *,
    image_size: int = 448,
    min_tiles: int = 1,
    max_tiles: int = 6,
    use_thumbnail: bool = True,
    use_msac: bool = False,
) -> list[Image.Image]:
    """Exactly the tiles the model sees, in the model's order, as PIL images."""
    image = _as_rgb(image)
    plan = plan_tiles(
        image.width,
        image.height,
        image_size=image_size,
        min_tiles=min_tiles,
        max_tiles=max_tiles,
        use_thumbnail=use_thumbnail,
        use_msac=use_msac,
    )
    resized = {grid: _resized(image, grid, image_size) for grid in {tile.grid for tile in plan.tiles}}
    return [resized[tile.grid].crop(tile.box) for tile in plan.tiles]


def _grid_array(image: Image.Image, grid: Grid, image_size: int) -> np.ndarray:
    """All tiles of one grid as a uint8 array [cols*rows, 3, S, S], row-major, with one resize."""
    cols, rows = grid
    pixels = np.asarray(_resized(image, grid, image_size), dtype=np.uint8)
    blocks = pixels.reshape(rows, image_size, cols, image_size, 3)
    return blocks.transpose(0, 2, 4, 1, 3).reshape(rows * cols, 3, image_size, image_size)


def _plan_array(image: Image.Image, plan: TilePlan) -> np.ndarray:
    """The plan's tiles as one uint8 array, gathered from one resized copy per distinct grid."""
    grids = sorted({tile.grid for tile in plan.tiles})
    offsets: dict[Grid, int] = {}
    stacks: list[np.ndarray] = []
    start = 0
    for grid in grids:
        offsets[grid] = start
        stacks.append(_grid_array(image, grid, plan.image_size))
        start += grid[0] * grid[1]
    order = [offsets[tile.grid] + tile.index for tile in plan.tiles]
    return np.concatenate(stacks)[order]


def normalize_uint8(tiles: np.ndarray | torch.Tensor) -> torch.Tensor:
    """[N, 3, S, S] uint8 -> float32 scaled to [0, 1] then ImageNet-normalised per channel."""
    values = torch.as_tensor(tiles).to(torch.float32) / 255.0
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float32).view(1, 3, 1, 1)
    return (values - mean) / std


def _as_list(image_or_images: Image.Image | Sequence[Image.Image]) -> list[Image.Image]:
    if isinstance(image_or_images, Image.Image):
        return [image_or_images]
    return list(image_or_images)


def _msac_applies(images: Sequence[Image.Image], use_msac: bool) -> bool:
    # H2OVL (and vLLM) only use MSAC for a lone image: pages of a PDF or a licence's two sides never get it.
    return use_msac and len(images) == 1


def plans_for(
    images: Sequence[Image.Image],
    *,
    image_size: int = 448,
    min_tiles: int = 1,
    max_tiles: int = 6,
    use_thumbnail: bool = True,
    use_msac: bool = False,
) -> list[TilePlan]:
    """The tile plan of each image when `images` go to the model together (MSAC only for a lone image)."""
    msac = _msac_applies(images, use_msac)
    return [
        plan_tiles(
            image.width,
            image.height,
            image_size=image_size,
            min_tiles=min_tiles,
            max_tiles=max_tiles,
            use_thumbnail=use_thumbnail,
            use_msac=msac,
        )
        for image in images
    ]


def tile_counts(images: Sequence[Image.Image], **tiling: Any) -> list[int]:
    """Tiles per image when `images` go to the model together (as `pixel_values` would lay them out)."""
    return [plan.num_tiles for plan in plans_for(images, **tiling)]


def pixel_values(image_or_images: Image.Image | Sequence[Image.Image], **tiling: Any) -> torch.Tensor:
    """The model's input tensor [N, 3, S, S] float32 for one image or several (tiles concatenated in order).

    Keywords as `plans_for`. MSAC is applied only when a single image is given.
    """
    images = [_as_rgb(image) for image in _as_list(image_or_images)]
    if not images:
        raise ValueError("pixel_values needs at least one image")
    arrays = [
        _plan_array(image, plan) for image, plan in zip(images, plans_for(images, **tiling), strict=True)
    ]
    return normalize_uint8(np.concatenate(arrays))
