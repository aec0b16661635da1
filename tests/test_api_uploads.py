"""POST /v1/documents: every kind of bad input is refused with the right status and JSON error, the
server stays healthy, and nothing refused leaves a row or a blob behind."""

from __future__ import annotations

import io
import struct
import zlib

import pytest
from pypdf import PdfWriter
from sqlalchemy import func, select

from storage.models import Document


def _stored(client) -> tuple[int, int, int]:
    """(documents, blobs, temp files) as the app's database and blob store have them."""
    state = client.app.state.bayou
    with state.sessions() as session:
        rows = session.scalar(select(func.count()).select_from(Document))
    blobs = len(list(state.blobs.iter_hashes()))
    temps = len(list((state.blobs.root / ".tmp").iterdir()))
    return rows, blobs, temps


def _upload(client, content: bytes, *, filename: str = "doc.png", doc_type: str = "receipt", **form):
    return client.post(
        "/v1/documents",
        files={"file": (filename, content, "application/octet-stream")},
        data={"doc_type": doc_type, **form},
    )


def _assert_refused(client, response, status: int, code: str, before) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert _stored(client) == before
    assert client.get("/healthz").status_code == 200
    assert client.app.state.bayou.enqueue.calls == []


def _jpeg(size=(64, 48)) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 10, 10)).save(buffer, format="JPEG")
    return buffer.getvalue()


def _pdf(pages: int = 1, *, password: str | None = None) -> bytes:
    writer = PdfWriter()
    for _ in range(pages):
        writer.add_blank_page(width=200, height=200)
    if password is not None:
        writer.encrypt(user_password=password, owner_password=password)
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def _png_claiming(width: int, height: int) -> bytes:
    """A tiny valid-looking PNG whose IHDR claims width x height (a decompression bomb's header)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1024)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


# --- refused on a cheap look --------------------------------------------------------------------------


def test_empty_file_is_415(api_client):
    before = _stored(api_client)
    _assert_refused(api_client, _upload(api_client, b""), 415, "empty_file", before)


def test_wrong_magic_bytes_behind_a_jpg_name_is_415(api_client):
    before = _stored(api_client)
    response = _upload(api_client, b"MZ\x90\x00 this is an executable, not a photo", filename="photo.jpg")
    _assert_refused(api_client, response, 415, "unsupported_type", before)


def test_jpeg_truncated_inside_its_header_is_422(api_client):
    before = _stored(api_client)
    response = _upload(api_client, _jpeg()[:40], filename="cut.jpg")
    _assert_refused(api_client, response, 422, "corrupt_file", before)


def test_png_truncated_inside_its_header_is_422(api_client, make_png):
    before = _stored(api_client)
    response = _upload(api_client, make_png()[:20], filename="cut.png")
    _assert_refused(api_client, response, 422, "corrupt_file", before)


def test_pdf_truncated_to_its_header_is_422(api_client):
    before = _stored(api_client)
    response = _upload(api_client, _pdf()[:60], filename="cut.pdf")
    _assert_refused(api_client, response, 422, "corrupt_file", before)


def test_encrypted_pdf_is_422(api_client):
    before = _stored(api_client)
    response = _upload(api_client, _pdf(password="s3cret"), filename="locked.pdf")
    _assert_refused(api_client, response, 422, "encrypted_pdf", before)


def test_pdf_with_an_empty_user_password_is_accepted(api_client):
    # viewers (and the renderer) open these without asking; refusing them would refuse real scans
    assert _upload(api_client, _pdf(password=""), filename="open.pdf").status_code == 202


def test_pdf_with_1000_pages_is_422(api_client):
    before = _stored(api_client)
    response = _upload(api_client, _pdf(1000), filename="long.pdf")
    _assert_refused(api_client, response, 422, "too_many_pages", before)


def test_png_claiming_40000_by_40000_pixels_is_422(api_client):
    bomb = _png_claiming(40_000, 40_000)
    assert len(bomb) < 4096
    before = _stored(api_client)
    response = _upload(api_client, bomb, filename="bomb.png")
    _assert_refused(api_client, response, 422, "too_many_pixels", before)


def test_image_over_the_configured_pixel_cap_is_422(make_api_client, make_png):
    client = make_api_client(max_pixels=1000)
    before = _stored(client)
    _assert_refused(client, _upload(client, make_png(size=(64, 48))), 422, "too_many_pixels", before)


# --- refused by validation ----------------------------------------------------------------------------


def test_unsupported_doc_type_is_422(api_client, make_png):
    before = _stored(api_client)
    response = _upload(api_client, make_png(), doc_type="passport")
    _assert_refused(api_client, response, 422, "unknown_doc_type", before)


def test_unknown_model_is_422(api_client, make_png):
    before = _stored(api_client)
    response = _upload(api_client, make_png(), model="gpt-9")
    _assert_refused(api_client, response, 422, "unknown_model", before)


def test_missing_file_is_422(api_client):
    before = _stored(api_client)
    response = api_client.post("/v1/documents", data={"doc_type": "receipt"})
    _assert_refused(api_client, response, 422, "missing_field", before)
    assert "file" in response.json()["error"]["message"]


def test_two_files_in_one_upload_are_422_not_the_last_one_alone(api_client, make_png):
    # a licence's front and back sent as two `file` parts: keeping only the back would lose the front
    # unseen; one document is one file (a PDF or TIFF for several pages)
    before = _stored(api_client)
    response = api_client.post(
        "/v1/documents",
        files=[
            ("file", ("front.png", make_png(), "image/png")),
            ("file", ("back.png", make_png(), "image/png")),
        ],
        data={"doc_type": "drivers_license"},
    )
    _assert_refused(api_client, response, 422, "one_file_only", before)


def test_callback_url_that_is_not_http_is_422(api_client, make_png):
    before = _stored(api_client)
    response = _upload(api_client, make_png(), callback_url="file:///etc/passwd")
    _assert_refused(api_client, response, 422, "invalid_callback_url", before)


# --- size cap -----------------------------------------------------------------------------------------


def test_upload_above_the_cap_is_413(make_api_client):
    client = make_api_client(max_upload_mb=1)
    before = _stored(client)
    big = _jpeg() + b"\x00" * (1 << 20)
    _assert_refused(client, _upload(client, big, filename="big.jpg"), 413, "too_large", before)


def test_streamed_body_above_the_cap_is_cut_off_with_413(make_api_client):
    client = make_api_client(max_upload_mb=1)
    before = _stored(client)

    def chunks():
        yield b'--b\r\nContent-Disposition: form-data; name="doc_type"\r\n\r\nreceipt\r\n'
        yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.jpg"\r\n\r\n'
        for _ in range(40):
            yield b"\xff" * 65536
        yield b"\r\n--b--\r\n"

    # no Content-Length: the cap has to hold while the body streams in
    response = client.post(
        "/v1/documents", content=chunks(), headers={"Content-Type": "multipart/form-data; boundary=b"}
    )
    _assert_refused(client, response, 413, "too_large", before)


def test_file_just_under_the_cap_is_accepted(make_api_client):
    client = make_api_client(max_upload_mb=1)
    content = _jpeg()
    content += b"\x00" * ((1 << 20) - len(content))
    assert _upload(client, content, filename="edge.jpg").status_code == 202


# --- accepted -----------------------------------------------------------------------------------------


def test_upload_is_queued_and_enqueued(api_client, make_png):
    response = _upload(api_client, make_png(), doc_type="check")
    assert response.status_code == 202
    document = response.json()
    assert document["status"] == "queued"
    assert document["doc_type"] == "check"
    assert document["model"] == "h2ovl-2b"  # the check type's default
    assert set(document) == {
        "id", "filename", "doc_type", "status", "pages", "model", "created_at", "updated_at",
        "result", "error", "review", "scores",
    }  # fmt: skip
    assert document["pages"] is None and document["result"] is None
    assert api_client.app.state.bayou.enqueue.calls == [(document["id"], "h2ovl-2b", "check")]
    assert _stored(api_client) == (1, 1, 0)


def test_same_upload_twice_is_200_with_the_same_document(api_client, make_png):
    first = _upload(api_client, make_png(), filename="a.png")
    second = _upload(api_client, make_png(), filename="renamed.png")
    assert (first.status_code, second.status_code) == (202, 200)
    assert second.json()["id"] == first.json()["id"]
    assert _stored(api_client) == (1, 1, 0)
    assert len(api_client.app.state.bayou.enqueue.calls) == 1


def test_naming_the_default_model_is_the_same_document_as_naming_none(api_client, make_png):
    first = _upload(api_client, make_png())
    second = _upload(api_client, make_png(), model="h2ovl-800m")  # the receipt default
    assert second.status_code == 200 and second.json()["id"] == first.json()["id"]


def test_same_bytes_as_another_type_or_model_is_a_new_document(api_client, make_png):
    ids = {
        _upload(api_client, make_png()).json()["id"],
        _upload(api_client, make_png(), doc_type="check").json()["id"],
        _upload(api_client, make_png(), model="h2ovl-2b").json()["id"],
    }
    assert len(ids) == 3
    assert _stored(api_client) == (3, 1, 0)  # one blob: the bytes are the same


def test_truncated_jpeg_body_passes_the_cheap_look(api_client):
    # the header is intact; only decoding finds the damage, in the worker (the contract allows this)
    whole = _jpeg((256, 256))
    assert _upload(api_client, whole[: len(whole) // 2], filename="cut.jpg").status_code == 202


@pytest.mark.parametrize(
    ("sent", "stored"),
    [
        ("../../etc/passwd.png", "passwd.png"),
        ("C:\\Users\\x\\..\\scan.png", "scan.png"),
        ("..", "upload"),
        ("bill\u202egnp.exe", "bill gnp.exe"),
    ],
)
def test_path_traversal_and_control_characters_in_filenames_are_sanitised(api_client, make_png, sent, stored):
    response = _upload(api_client, make_png(), filename=sent)
    assert response.status_code == 202
    assert response.json()["filename"] == stored


def test_non_utf8_filename_is_stored_sanitised(api_client, make_png):
    body = (
        b'--b\r\nContent-Disposition: form-data; name="doc_type"\r\n\r\nreceipt\r\n'
        b'--b\r\nContent-Disposition: form-data; name="file"; filename="re\xe7u\xff/../x\x01.png"\r\n'
        b"Content-Type: image/png\r\n\r\n" + make_png() + b"\r\n--b--\r\n"
    )
    response = api_client.post(
        "/v1/documents", content=body, headers={"Content-Type": "multipart/form-data; boundary=b"}
    )
    assert response.status_code == 202, response.text
    name = response.json()["filename"]
    assert "/" not in name and "\x01" not in name and name.endswith(".png")
    name.encode("utf-8")  # whatever came in, what is stored is valid text


def test_enqueue_failure_leaves_the_document_queued(make_api_client, make_png):
    def broken_enqueue(document_id, *, model, doc_type):
        raise ConnectionError("broker down")

    client = make_api_client(app_kwargs={"enqueue": broken_enqueue})
    response = _upload(client, make_png())
    assert response.status_code == 202
    assert client.get(f"/v1/documents/{response.json()['id']}").json()["status"] == "queued"


def test_body_limit_stops_reading_once_over_the_cap():
    import asyncio

    from api.bodylimit import BodyLimitMiddleware, BodyTooLarge

    taken = 0

    async def endless_body():
        nonlocal taken
        taken += 1
        return {"type": "http.request", "body": b"x" * 1000, "more_body": True}

    async def read_everything(scope, receive, send):
        while (await receive()).get("more_body"):
            pass

    async def send(message):
        raise AssertionError("nothing should be sent by the reader")

    limited = BodyLimitMiddleware(read_everything, max_bytes=5000)
    with pytest.raises(BodyTooLarge) as raised:
        asyncio.run(limited({"type": "http", "headers": []}, endless_body, send))
    assert raised.value.status_code == 413
    assert taken == 6  # the chunk that crossed 5000 bytes was the last one read


def test_declared_length_over_the_cap_is_refused_before_reading(make_api_client):
    client = make_api_client(max_upload_mb=1)
    response = client.post(
        "/v1/documents",
        content=b"x" * (2 << 20),
        headers={"Content-Type": "multipart/form-data; boundary=b"},
    )
    assert response.status_code == 413 and response.json()["error"]["code"] == "too_large"


def test_an_app_made_without_an_enqueue_hands_documents_to_the_workers(make_api_client, monkeypatch):
    from workers import dispatch

    handed: list[tuple] = []

    def recording_send_rasterize(document_id, gpu_queue, *, app=None):
        handed.append((document_id, gpu_queue))

    # the real workers.enqueue, down to the one call that would talk to the broker
    monkeypatch.setattr(dispatch, "send_rasterize", recording_send_rasterize)
    client = make_api_client(app_kwargs={"enqueue": None})
    response = client.post(
        "/v1/documents", files={"file": ("a.png", _png_claiming(64, 64))}, data={"doc_type": "check"}
    )
    assert response.status_code == 202
    assert handed == [(response.json()["id"], "gpu.2b")]


def test_an_enqueue_that_fails_leaves_the_document_stored_and_queued(make_api_client, caplog):
    def broker_down(document_id, *, model, doc_type):
        raise ConnectionError("broker unreachable")

    client = make_api_client(app_kwargs={"enqueue": broker_down})
    with caplog.at_level("ERROR"):
        response = client.post(
            "/v1/documents", files={"file": ("a.png", _png_claiming(64, 64))}, data={"doc_type": "check"}
        )
    assert response.status_code == 202
    document_id = response.json()["id"]
    assert client.get(f"/v1/documents/{document_id}").json()["status"] == "queued"
    assert f"{document_id}; it stays queued" in caplog.text
