"""Decoding images: every fixture is generated here with PIL, every refusal must carry its code."""

from __future__ import annotations

import io
import resource
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from extractor.errors import InputError
from extractor.images import MIN_SIDE, load_image, normalize_image
from tests.imaging import encode, noise, png_claiming_size

EXIF_ORIENTATION = 0x0112


def refusal(source: bytes | str | Path, **kwargs: int) -> InputError:
    with pytest.raises(InputError) as caught:
        load_image(source, **kwargs)
    return caught.value


# --- refusals ---------------------------------------------------------------------------------------------


def test_empty_input() -> None:
    assert refusal(b"").code == "empty_file"


def test_random_bytes_are_not_an_image() -> None:
    junk = np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    assert refusal(junk).code == "unsupported_image"


def test_one_pixel_image_is_too_small() -> None:
    error = refusal(encode(Image.new("RGB", (1, 1)), "PNG"))
    assert error.code == "unsupported_image"
    assert str(MIN_SIDE) in error.message


def test_thin_strip_is_too_small_but_ten_pixels_is_fine() -> None:
    assert refusal(encode(Image.new("RGB", (500, 7)), "PNG")).code == "unsupported_image"
    assert load_image(encode(Image.new("RGB", (10, 10)), "PNG")).size == (10, 10)


def test_pixel_cap_from_caller() -> None:
    data = encode(Image.new("RGB", (100, 60)), "PNG")
    assert refusal(data, max_pixels=5_999).code == "too_many_pixels"
    assert load_image(data, max_pixels=6_000).size == (100, 60)


def test_huge_claimed_png_is_refused_without_decoding() -> None:
    data = png_claiming_size(40_000, 40_000)
    assert len(data) < 200
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    assert refusal(data).code == "too_many_pixels"
    # 1.6 gigapixels would need gigabytes; refusing from the header needs neither time nor memory.
    assert time.perf_counter() - started < 1.0
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before < 50 * 1024  # KiB on Linux


def test_refusal_past_pil_own_limit_names_the_size_and_our_limit() -> None:
    # 1.6 gigapixels trips PIL's decompression-bomb error before our check; the message is still ours
    error = refusal(png_claiming_size(40_000, 40_000), max_pixels=50_000_000)
    assert "1600000000 pixels" in error.message
    assert "50000000" in error.message
    assert str(2 * Image.MAX_IMAGE_PIXELS) not in error.message  # PIL's own limit means nothing to a user


def test_own_cap_does_not_depend_on_pil_global(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    assert refusal(png_claiming_size(40_000, 40_000)).code == "too_many_pixels"
    assert refusal(png_claiming_size(3_000, 3_000), max_pixels=1_000_000).code == "too_many_pixels"


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_file_is_corrupt(fmt: str) -> None:
    data = encode(noise(64, 64), fmt)
    assert refusal(data[: len(data) // 2]).code == "corrupt_file"


def test_missing_path_is_a_typed_error(tmp_path: Path) -> None:
    assert refusal(tmp_path / "nope.png").code == "corrupt_file"


def test_path_input(tmp_path: Path) -> None:
    path = tmp_path / "page.png"
    Image.new("RGB", (20, 30), (1, 2, 3)).save(path)
    for source in (path, str(path)):
        image = load_image(source)
        assert image.size == (20, 30)
        assert image.getpixel((5, 5)) == (1, 2, 3)


# --- modes ------------------------------------------------------------------------------------------------


def test_cmyk_jpeg_becomes_rgb() -> None:
    cmyk = Image.new("CMYK", (16, 16), (0, 255, 255, 0))  # pure red in CMYK
    image = load_image(encode(cmyk, "JPEG", quality=95))
    assert image.mode == "RGB"
    red, green, blue = image.getpixel((8, 8))
    assert red > 230 and green < 25 and blue < 25


def test_la_png_is_flattened_on_white() -> None:
    la = Image.new("LA", (16, 16), (0, 0))  # black, fully transparent
    la.paste((0, 255), (0, 0, 8, 16))  # left half black and opaque
    image = load_image(encode(la, "PNG"))
    assert image.mode == "RGB"
    assert image.getpixel((2, 2)) == (0, 0, 0)
    assert image.getpixel((12, 2)) == (255, 255, 255)


def test_rgba_half_transparent_blends_with_white() -> None:
    image = load_image(encode(Image.new("RGBA", (16, 16), (255, 0, 0, 128)), "PNG"))
    red, green, blue = image.getpixel((0, 0))
    assert red == 255 and 120 <= green <= 135 and green == blue


def test_palette_png_with_transparency() -> None:
    palette = Image.new("P", (16, 16), 0)
    palette.putpalette([0, 0, 0, 0, 0, 255] + [0] * 762)  # index 0 black, index 1 blue
    palette.paste(1, (0, 0, 16, 8))  # top half blue
    image = load_image(encode(palette, "PNG", transparency=0))
    assert image.mode == "RGB"
    assert image.getpixel((4, 2)) == (0, 0, 255)
    assert image.getpixel((4, 12)) == (255, 255, 255)  # transparent black -> paper white


def test_palette_png_without_transparency_keeps_colours() -> None:
    palette = Image.new("P", (16, 16), 0)
    palette.putpalette([10, 20, 30] + [0] * 765)
    assert load_image(encode(palette, "PNG")).getpixel((3, 3)) == (10, 20, 30)


def test_16_bit_png_is_stretched_over_its_range() -> None:
    values = np.tile(np.linspace(1_000, 3_000, 32).astype(np.uint16), (16, 1))
    source = Image.fromarray(values)
    assert source.mode == "I;16"
    image = load_image(encode(source, "PNG"))
    assert image.mode == "RGB"
    row = np.asarray(image)[0, :, 0].astype(int)
    assert row[0] == 0 and row[-1] == 255
    assert np.all(np.diff(row) >= 0)
    assert np.array_equal(np.asarray(image)[..., 0], np.asarray(image)[..., 2])


@pytest.mark.parametrize("mode", ["I;16", "I", "F"])
def test_a_deep_4000_x_4000_image_is_rescaled_without_float64_copies_of_it(mode: str) -> None:
    # a 40 KB 16-bit PNG of this size took ~490 MB (several whole float64 copies) before rescaling in bands
    ramp = np.linspace(0, 40_000, 4000).astype(np.uint16)
    source = encode(Image.fromarray(np.ascontiguousarray(np.broadcast_to(ramp, (4000, 4000)))), "PNG")
    assert len(source) < 100_000
    decoded = Image.open(io.BytesIO(source))
    decoded.load()
    deep = decoded if mode == "I;16" else decoded.convert(mode)
    assert deep.mode == mode
    tracemalloc.start()  # numpy's arrays and PIL's byte copies are traced; the decoded pixels were before
    try:
        image = normalize_image(deep)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # the image's own values once (64 MB at 32 bits) and the 8-bit result (16 MB), plus bands of rows
    assert peak < 128 << 20
    assert image.mode == "RGB" and image.size == (4000, 4000)
    assert image.getpixel((0, 0)) == (0, 0, 0) and image.getpixel((3999, 3999)) == (255, 255, 255)


@pytest.mark.parametrize(
    ("array", "expected"),
    [
        (np.array([[-5, 5], [15, 25]] * 8, dtype=np.int32).repeat(8, axis=1), [0, 85, 170, 255]),
        (np.array([[0.0, 0.5], [1.0, 2.0]] * 8, dtype=np.float32).repeat(8, axis=1), [0, 64, 128, 255]),
    ],
)
def test_32_bit_and_float_images_are_stretched(array: np.ndarray, expected: list[int]) -> None:
    image = normalize_image(Image.fromarray(array))
    assert image.mode == "RGB"
    grey = np.asarray(image)[..., 0]
    assert [grey[0, 0], grey[0, 8], grey[1, 0], grey[1, 8]] == expected


@pytest.mark.parametrize(("value", "expected"), [(0, 0), (40_000, 255)])
def test_constant_deep_image(value: int, expected: int) -> None:
    image = normalize_image(Image.fromarray(np.full((10, 10), value, dtype=np.uint16)))
    assert image.getpixel((0, 0)) == (expected,) * 3


@pytest.mark.parametrize("mode", ["1", "L", "YCbCr", "HSV", "RGBX"])
def test_other_modes_become_rgb(mode: str) -> None:
    image = normalize_image(Image.new("RGB", (12, 12), (200, 100, 50)).convert(mode))
    assert image.mode == "RGB"
    assert image.size == (12, 12)


def test_rgb_is_returned_as_is() -> None:
    image = Image.new("RGB", (12, 12))
    assert normalize_image(image) is image


def test_normalize_refuses_tiny_images() -> None:
    with pytest.raises(InputError) as caught:
        normalize_image(Image.new("RGB", (7, 100)))
    assert caught.value.code == "unsupported_image"


# --- orientation and animation ----------------------------------------------------------------------------


def test_exif_orientation_is_applied() -> None:
    stored = Image.new("RGB", (40, 20), (0, 0, 255))
    stored.paste((255, 0, 0), (0, 0, 20, 20))  # left half red
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = 6  # "rotate 90 clockwise to display": the stored left edge becomes the top
    image = load_image(encode(stored, "JPEG", quality=95, exif=exif.tobytes()))
    assert image.size == (20, 40)
    top, bottom = image.getpixel((10, 5)), image.getpixel((10, 35))
    assert top[0] > 200 and top[2] < 50
    assert bottom[2] > 200 and bottom[0] < 50


@pytest.mark.parametrize("fmt", ["GIF", "PNG", "WEBP"])
def test_animation_yields_first_frame(fmt: str) -> None:
    frames = [Image.new("RGB", (16, 16), colour) for colour in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    options = {"lossless": True} if fmt == "WEBP" else {}
    data = encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, loop=0, **options)
    assert getattr(Image.open(io.BytesIO(data)), "n_frames", 1) == 3
    image = load_image(data)
    assert image.mode == "RGB"
    red, green, blue = image.getpixel((8, 8))
    assert red > 240 and green < 15 and blue < 15
