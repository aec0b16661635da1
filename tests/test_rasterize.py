"""Documents to page images. PDFs are drawn here with reportlab and reshaped with pypdf; nothing binary is
committed."""

from __future__ import annotations

import io
import json
import math
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from pdf2image.exceptions import PDFPopplerTimeoutError
from PIL import Image
from pypdf import PdfReader, PdfWriter
from reportlab.lib.pagesizes import A4, letter
from reportlab.pdfgen import canvas

import extractor.rasterize as rasterize_module
from extractor.errors import InputError
from extractor.pipeline import DocumentInput, Limits, rasterize_document
from extractor.pixel_budget import DEFAULT_MAX_DOCUMENT_PIXELS
from extractor.rasterize import page_count_hint, rasterize, sniff_media_type
from tests.imaging import encode, many_directory_tiff

REPO = Path(__file__).resolve().parents[1]
A4_AT_200_DPI = (1654, 2339)


def make_pdf(pages: int, pagesize: tuple[float, float] = A4) -> bytes:
    """Each page has a black square whose height from the top grows with the page number."""
    buffer = io.BytesIO()
    drawing = canvas.Canvas(buffer, pagesize=pagesize)
    for number in range(pages):
        drawing.rect(72, pagesize[1] - 144 - 72 * number, 72, 72, stroke=0, fill=1)
        drawing.drawString(200, 400, f"page {number + 1}")
        drawing.showPage()
    drawing.save()
    return buffer.getvalue()


def rewrite(data: bytes, *, rotate: int = 0, user_password: str | None = None) -> bytes:
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(data)))
    if rotate:
        for page in writer.pages:
            page.rotate(rotate)
    if user_password is not None:
        writer.encrypt(user_password=user_password, owner_password="owner-secret")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def refusal(source: bytes | str | Path, **kwargs: int) -> InputError:
    with pytest.raises(InputError) as caught:
        rasterize(source, **kwargs)
    return caught.value


@pytest.fixture
def no_rendering(monkeypatch: pytest.MonkeyPatch) -> None:
    """Proves a refusal happened before poppler was asked to render anything."""

    def forbidden(*args: object, **kwargs: object) -> list[str]:
        raise AssertionError("poppler should not have been called")

    monkeypatch.setattr(rasterize_module, "convert_from_path", forbidden)


def is_dark(image: Image.Image, x_inch: float, y_inch_from_top: float, dpi: int = 200) -> bool:
    return sum(image.getpixel((int(x_inch * dpi), int(y_inch_from_top * dpi)))) < 100


# --- sniffing ---------------------------------------------------------------------------------------------

HEIC_HEAD = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic"

SNIFF_TABLE = [
    (encode(Image.new("RGB", (8, 8)), "JPEG"), "image/jpeg"),
    (encode(Image.new("RGB", (8, 8)), "PNG"), "image/png"),
    (encode(Image.new("P", (8, 8)), "GIF"), "image/gif"),
    (b"GIF87a" + bytes(20), "image/gif"),
    (encode(Image.new("RGB", (8, 8)), "BMP"), "image/bmp"),
    (encode(Image.new("RGB", (8, 8)), "TIFF"), "image/tiff"),
    (b"MM\x00*\x00\x00\x00\x08", "image/tiff"),
    (encode(Image.new("RGB", (8, 8)), "WEBP"), "image/webp"),
    (HEIC_HEAD, "image/heic"),
    (b"\x00\x00\x00\x18ftypmif1\x00\x00\x00\x00mif1heic", "image/heic"),
    (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", "application/pdf"),
    (b"\xef\xbb\xbf junk before the header %PDF-1.4\n", "application/pdf"),
    (b"", None),
    (b"hello, world", None),
    (b"BM but really just some text here", None),
    (b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1", None),
    (b"RIFF\x24\x00\x00\x00WAVEfmt ", None),
    (b"PK\x03\x04" + bytes(26), None),
]


@pytest.mark.parametrize(("head", "expected"), SNIFF_TABLE)
def test_sniff_media_type(head: bytes, expected: str | None) -> None:
    assert sniff_media_type(head) == expected


def test_names_are_ignored(tmp_path: Path) -> None:
    path = tmp_path / "photo.jpg"
    path.write_bytes(encode(Image.new("RGB", (30, 20), (0, 128, 0)), "PNG"))
    assert sniff_media_type(path.read_bytes()[:16]) == "image/png"
    [page] = rasterize(path)
    assert page.size == (30, 20)
    assert page.getpixel((1, 1)) == (0, 128, 0)


def test_unsupported_and_empty() -> None:
    assert refusal(b"just some text, not a document").code == "unsupported_type"
    assert refusal(b"").code == "empty_file"


# --- PDF --------------------------------------------------------------------------------------------------


def test_one_page_a4_at_200_dpi() -> None:
    [page] = rasterize(make_pdf(1))
    assert page.mode == "RGB"
    assert abs(page.width - A4_AT_200_DPI[0]) <= 1 and abs(page.height - A4_AT_200_DPI[1]) <= 1
    assert is_dark(page, 1.5, 1.5)  # the square, 1 to 2 inches from the top-left corner
    assert not is_dark(page, 4.0, 1.5)


def test_three_pages_in_order() -> None:
    pages = rasterize(make_pdf(3))
    assert len(pages) == 3
    for number, page in enumerate(pages):
        assert page.mode == "RGB"
        assert abs(page.width - A4_AT_200_DPI[0]) <= 1 and abs(page.height - A4_AT_200_DPI[1]) <= 1
        # Page n carries its square n inches lower than page 1 does.
        assert [is_dark(page, 1.5, 1.5 + k) for k in range(3)] == [k == number for k in range(3)]


def test_many_pages_keep_their_order() -> None:
    # Page n is (100 + 10n) points wide, so at 72 dpi its image is that many pixels wide.
    buffer = io.BytesIO()
    drawing = canvas.Canvas(buffer)
    for number in range(12):
        drawing.setPageSize((100 + 10 * number, 200))
        drawing.drawString(10, 10, str(number))
        drawing.showPage()
    drawing.save()
    pages = rasterize(buffer.getvalue(), dpi=72)
    assert [page.size for page in pages] == [(100 + 10 * number, 200) for number in range(12)]


def test_dpi_and_page_size_are_respected() -> None:
    [page] = rasterize(make_pdf(1, pagesize=letter), dpi=100)
    assert page.size == (850, 1100)


def test_rotated_page_is_rendered_landscape() -> None:
    [page] = rasterize(rewrite(make_pdf(1), rotate=90))
    assert abs(page.width - A4_AT_200_DPI[1]) <= 1 and abs(page.height - A4_AT_200_DPI[0]) <= 1


def test_password_protected_pdf_is_refused(no_rendering: None) -> None:
    assert refusal(rewrite(make_pdf(1), user_password="s3cret")).code == "encrypted_pdf"


def test_pdf_with_empty_user_password_opens() -> None:
    data = rewrite(make_pdf(2), user_password="")
    assert PdfReader(io.BytesIO(data)).is_encrypted
    assert len(rasterize(data)) == 2


def test_too_many_pages_is_refused_before_rendering(no_rendering: None) -> None:
    error = refusal(make_pdf(25), max_pages=20)
    assert error.code == "too_many_pages"
    assert "25" in error.message


def blank_pdf(pages: int, side_pt: float) -> bytes:
    buffer = io.BytesIO()
    drawing = canvas.Canvas(buffer, pagesize=(side_pt, side_pt), pageCompression=1)
    for _ in range(pages):
        drawing.showPage()
    drawing.save()
    return buffer.getvalue()


def total_pixels(pages: list[Image.Image]) -> int:
    return sum(page.width * page.height for page in pages)


def test_oversized_page_is_rendered_at_a_lower_resolution() -> None:
    giant = make_pdf(1, pagesize=(14_400, 14_400))  # 200 inches square: 40000 x 40000 px at 200 dpi
    [page] = rasterize(giant, max_pixels=1_000_000)
    assert page.width == page.height and 900 < page.width <= 1000
    [a4] = rasterize(make_pdf(1), max_pixels=1_000_000)  # 1654 x 2339 at 200 dpi
    assert a4.width * a4.height <= 1_000_000 and a4.width > 800
    assert round(a4.height / a4.width, 2) == round(A4_AT_200_DPI[1] / A4_AT_200_DPI[0], 2)


def test_a_page_that_would_lose_a_side_to_the_reduction_is_refused(no_rendering: None) -> None:
    sliver = make_pdf(1, pagesize=(14_400, 4))  # 40000 x 12 px at 200 dpi: under the cap it is 5 px tall
    assert refusal(sliver, max_pixels=100_000).code == "too_many_pixels"
    assert refusal(make_pdf(3), max_document_pixels=2).code == "too_many_pixels"


def test_twenty_huge_blank_pages_do_not_ask_poppler_for_more_than_the_document_budget(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # each page is just under the page cap at 200 dpi (9445 x 9445); all 20 were ~1.8 Gpx, ~5 GB of PPM
    bomb = blank_pdf(20, 3400)
    assert len(bomb) < 10_000
    asked: list[tuple[float, int, int]] = []

    class Stop(Exception):
        pass

    def spy(
        *args: object, dpi: float, first_page: int | None = None, last_page: int | None = None, **kw: object
    ):
        asked.append((dpi, first_page or 1, last_page or 20))
        raise Stop

    monkeypatch.setattr(rasterize_module, "convert_from_path", spy)
    with pytest.raises(Stop):
        rasterize(bomb)
    (dpi, first, last) = asked[0]
    pixels_asked = (last - first + 1) * math.ceil(3400 * dpi / 72) ** 2
    assert (first, last) == (1, 20)
    assert pixels_asked <= DEFAULT_MAX_DOCUMENT_PIXELS


def test_pages_of_one_document_share_its_pixel_budget() -> None:
    pages = rasterize(blank_pdf(3, 3400), max_document_pixels=3_000_000)
    assert len(pages) == 3 and total_pixels(pages) <= 3_000_000
    assert all(page.size == pages[0].size and page.width > 900 for page in pages)
    # a page under the caps keeps its resolution even next to one that must be reduced
    mixed = io.BytesIO()
    writer = PdfWriter()
    for data in (make_pdf(1), blank_pdf(1, 3400)):
        writer.append(PdfReader(io.BytesIO(data)))
    writer.write(mixed)
    first, second = rasterize(mixed.getvalue(), max_pixels=10_000_000)
    assert first.size == A4_AT_200_DPI
    assert second.width * second.height <= 10_000_000 and second.width > 3000


def test_images_over_the_document_budget_are_shrunk_once_decoded() -> None:
    [photo] = rasterize(encode(Image.new("RGB", (1000, 800), "white"), "PNG"), max_document_pixels=200_000)
    assert photo.size == (500, 400)
    frames = rasterize(multipage_tiff([(400, 400), (400, 200)]), max_document_pixels=60_000)
    assert [frame.size for frame in frames] == [(200, 200), (200, 100)]
    assert [frame.getpixel((50, 50)) for frame in frames] == COLOURS[:2]
    assert (
        refusal(multipage_tiff([(400, 400), (400, 8)]), max_document_pixels=60_000).code == "too_many_pixels"
    )


def test_the_files_of_one_document_share_its_budget() -> None:
    front_and_back = DocumentInput(
        sources=[encode(Image.new("RGB", (1000, 1000), colour), "PNG") for colour in ("red", "blue")],
        doc_type="drivers_license",
    )
    rasterized = rasterize_document(front_and_back, Limits(max_document_pixels=1_000_000))
    assert rasterized.error is None
    assert [image.size for image in rasterized.images] == [(707, 707), (707, 707)]


# Its own interpreter: the peak is this document's alone (see _BOMB_PROBE below for how it is read).
_BUDGET_PROBE = """
import io, json, re, resource
from pathlib import Path
from reportlab.pdfgen import canvas
from extractor.rasterize import rasterize
buffer = io.BytesIO()
drawing = canvas.Canvas(buffer, pagesize=(3400, 3400), pageCompression=1)
for _ in range(20):
    drawing.showPage()
drawing.save()
pages = rasterize(buffer.getvalue(), timeout_s=60)
print(json.dumps({
    "pixels": sum(page.width * page.height for page in pages),
    "self_mib": int(re.search(r"VmHWM:\\s+(\\d+) kB", Path("/proc/self/status").read_text()).group(1)) / 1024,
    "poppler_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
}))
"""


def _run_probe(script: str, *args: str, timeout_s: int) -> dict:
    """Run `script` in a fresh interpreter (its own peak memory) and return the JSON its last line prints."""
    result = subprocess.run(
        [sys.executable, "-c", script, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="peak memory is read from Linux /proc")
def test_twenty_huge_blank_pages_are_rasterised_within_the_budget_in_memory() -> None:
    report = _run_probe(_BUDGET_PROBE, timeout_s=120)
    assert report["pixels"] <= DEFAULT_MAX_DOCUMENT_PIXELS
    # 100 Mpx held as RGB is ~290 MiB; at 200 dpi the pages would have been ~5 GiB, poppler's each 255 MiB
    assert report["self_mib"] < 700
    assert report["poppler_mib"] < 150


@pytest.mark.parametrize("fraction", [0.2, 0.6, 0.95])
def test_truncated_pdf_is_corrupt(fraction: float) -> None:
    data = make_pdf(3)
    assert refusal(data[: int(len(data) * fraction)]).code == "corrupt_file"


def test_garbage_after_pdf_header_is_corrupt() -> None:
    junk = np.random.default_rng(3).integers(0, 256, 5000, dtype=np.uint8).tobytes()
    assert refusal(b"%PDF-1.4\n" + junk).code == "corrupt_file"


def test_render_timeout_is_a_typed_refusal(monkeypatch: pytest.MonkeyPatch) -> None:
    def slow(*args: object, **kwargs: object) -> list[str]:
        raise PDFPopplerTimeoutError("Run poppler timeout.")

    monkeypatch.setattr(rasterize_module, "convert_from_path", slow)
    assert refusal(make_pdf(1), timeout_s=1).code == "corrupt_file"


def flate_bomb_pdf(inflated_mib: int) -> bytes:
    """One letter page whose content stream is `inflated_mib` MiB of zeros (PDF whitespace) deflated."""
    compressor = zlib.compressobj(9)
    chunk = bytes(1 << 20)
    stream = b"".join(compressor.compress(chunk) for _ in range(inflated_mib)) + compressor.flush()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R >>",
        b"<< /Length %d /Filter /FlateDecode >>\nstream\n%s\nendstream" % (len(stream), stream),
    ]
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n%s\nendobj\n" % (number, body))
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    out.write(b"".join(b"%010d 00000 n \n" % offset for offset in offsets))
    out.write(b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref))
    return out.getvalue()


# Runs in a fresh interpreter so its peak memory is not the test process's (torch and all). Its own peak
# is read from VmHWM, which starts afresh at exec; getrusage's ru_maxrss would carry over the peak of the
# process that spawned it. Poppler's peak (RUSAGE_CHILDREN) only carries over this small interpreter's.
_BOMB_PROBE = """
import json, re, resource, sys, time
from pathlib import Path
from extractor.errors import InputError
from extractor.rasterize import rasterize
started = time.perf_counter()
try:
    outcome = [page.size for page in rasterize(sys.argv[1], timeout_s=20)]
except InputError as error:
    outcome = error.code
peak_kib = int(re.search(r"VmHWM:\\s+(\\d+) kB", Path("/proc/self/status").read_text()).group(1))
print(json.dumps({
    "seconds": time.perf_counter() - started,
    "outcome": outcome,
    "self_mib": peak_kib / 1024,
    "poppler_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
}))
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="peak memory is read from Linux /proc")
def test_flate_bomb_is_rendered_with_bounded_memory(tmp_path: Path) -> None:
    inflated_mib = 256
    path = tmp_path / "bomb.pdf"
    path.write_bytes(flate_bomb_pdf(inflated_mib))
    assert path.stat().st_size < 1 << 20
    report = _run_probe(_BOMB_PROBE, str(path), timeout_s=60)
    assert report["outcome"] in ([[1700, 2200]], "corrupt_file")
    assert report["seconds"] < 15
    # Inflating the stream anywhere would cost at least its 256 MiB; neither process comes near that.
    assert report["self_mib"] < 200
    assert report["poppler_mib"] < 200


# --- TIFF and HEIC ----------------------------------------------------------------------------------------

COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]


def multipage_tiff(sizes: list[tuple[int, int]]) -> bytes:
    frames = [Image.new("RGB", size, colour) for size, colour in zip(sizes, COLOURS, strict=False)]
    return encode(frames[0], "TIFF", save_all=True, append_images=frames[1:])


def test_multipage_tiff_gives_one_image_per_frame() -> None:
    sizes = [(40, 50), (60, 30), (20, 20)]
    pages = rasterize(multipage_tiff(sizes))
    assert [page.size for page in pages] == sizes
    assert [page.getpixel((5, 5)) for page in pages] == COLOURS
    assert all(page.mode == "RGB" for page in pages)


def test_multipage_tiff_page_cap() -> None:
    assert refusal(multipage_tiff([(20, 20)] * 3), max_pages=2).code == "too_many_pages"


def test_tiff_page_cap_reads_no_more_directories_than_the_cap() -> None:
    bomb = many_directory_tiff(40_000)  # 4.6 MB; n_frames would read all 40,000 directories (20 s here)
    started = time.process_time()
    assert refusal(bomb, max_pages=20).code == "too_many_pages"
    assert time.process_time() - started < 1.0
    assert [page.size for page in rasterize(many_directory_tiff(20), max_pages=20)] == [(8, 8)] * 20
    assert refusal(many_directory_tiff(21), max_pages=20).code == "too_many_pages"
    assert page_count_hint(many_directory_tiff(5)) == 5


def test_tiff_frame_pixel_cap() -> None:
    assert refusal(multipage_tiff([(20, 20), (200, 200)]), max_pixels=10_000).code == "too_many_pixels"


def test_heic_photo() -> None:
    try:
        data = encode(Image.new("RGB", (64, 48), (200, 30, 30)), "HEIF", quality=95)
    except Exception as exc:  # no HEVC encoder in this pillow_heif build
        pytest.skip(f"pillow_heif cannot write HEIC here: {exc}")
    assert sniff_media_type(data[:32]) == "image/heic"
    [page] = rasterize(data)
    assert page.size == (64, 48)
    red, green, blue = page.getpixel((32, 24))
    assert red > 170 and green < 70 and blue < 70


def test_gif_is_a_single_page() -> None:
    frames = [Image.new("RGB", (16, 16), colour) for colour in COLOURS]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    assert len(rasterize(data)) == 1
    assert len(rasterize(data, max_pages=1)) == 1
    assert refusal(data, max_pages=0).code == "too_many_pages"


# --- page count hint --------------------------------------------------------------------------------------


def test_page_count_hint() -> None:
    assert page_count_hint(make_pdf(3)) == 3
    assert page_count_hint(make_pdf(25)) == 25
    assert page_count_hint(multipage_tiff([(20, 20)] * 3)) == 3
    assert page_count_hint(encode(Image.new("RGB", (20, 20)), "PNG")) == 1
    assert page_count_hint(b"not a document") is None
    assert page_count_hint(b"") is None
    assert page_count_hint(b"%PDF-1.4\n garbage") is None
    assert page_count_hint(rewrite(make_pdf(2), user_password="s3cret")) is None


def test_page_count_hint_from_path(tmp_path: Path) -> None:
    path = tmp_path / "doc.pdf"
    path.write_bytes(make_pdf(2))
    assert page_count_hint(path) == 2
    assert page_count_hint(tmp_path / "missing.pdf") is None
