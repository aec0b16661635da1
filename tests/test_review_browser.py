"""The review UI in a real browser: Playwright (Python) driving Debian's Chromium headless (no browser download:
`executable_path=/usr/bin/chromium`). Signing in, the queue's filters, correcting a field and a line item,
approving, rejecting with a reason, the dashboard's figures moving after a review, CSRF-less posts refused,
admin pages closed to reviewers, an admin creating and disabling an account, keyboard-only use with every
form control labelled, and grounding: a focused field's outline on its page, a hovered outline's name, the
values not found on the page marked, a licence barcode's value taken with one key.

Screenshots of the queue, a document and the dashboard go to the test's tmp dir, or to the folder named by
BAYOU_SCREENSHOTS (relative to the repository root): `BAYOU_SCREENSHOTS=docs pytest tests/test_review_browser.py`
refreshes docs/review-{queue,document,dashboard,users,licence}.png."""

from __future__ import annotations

import datetime as dt
import io
import os
import re
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select, update

from extractor.result import Result
from storage.models import ExtractionRun, Review, Score, User
from tests.conftest import REVIEW_PASSWORD
from tests.imaging import needs_tesseract

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
VIEWPORT = {"width": 1280, "height": 800}
ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"
TIMEOUT_MS = 15_000

# every visible form control has an accessible name: a <label> (for= or wrapping), aria-label or aria-labelledby
UNLABELLED_JS = """() => Array.from(document.querySelectorAll("input, select, textarea"))
  .filter((el) => el.type !== "hidden")
  .filter((el) => !(el.labels && Array.from(el.labels).some((l) => l.textContent.trim()))
    && !(el.getAttribute("aria-label") || "").trim()
    && !(el.getAttribute("aria-labelledby") || "").split(/\\s+/).some(
      (id) => id && document.getElementById(id) && document.getElementById(id).textContent.trim()))
  .map((el) => el.outerHTML.slice(0, 120))"""


# --- serving the app, the browser, screenshots -------------------------------------------------------------


@pytest.fixture
def review_db_url(api_data_dir: Path) -> str:
    """SQLite only: the route tests run on both databases; a browser adds nothing there but minutes."""
    return f"sqlite:///{api_data_dir / 'bayou.db'}"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def served(review_client) -> Iterator[str]:
    """The review client's app, served by uvicorn on 127.0.0.1 in a thread."""
    import uvicorn

    port = _free_port()
    # lifespan off: the TestClient already runs the app's lifespan, which disposes the engine at the end
    server = uvicorn.Server(
        uvicorn.Config(review_client.app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("uvicorn did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def chromium() -> Iterator[object]:
    """One headless Chromium for the module (each test gets a fresh context: no shared cookies)."""
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed (pip install playwright)"
    )
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    with sync_api.sync_playwright() as playwright:
        try:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS, timeout=60_000
            )
        except sync_api.Error as exc:
            pytest.skip(f"Chromium could not be started: {exc.message}")
        yield browser
        browser.close()


@pytest.fixture
def page(chromium, served: str) -> Iterator[object]:
    context = chromium.new_context(viewport=VIEWPORT, base_url=served, locale="en-US", timezone_id="UTC")
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    context.close()
    assert not errors, f"JavaScript errors: {errors}"


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    """Where screenshots go: BAYOU_SCREENSHOTS (relative to the repository root), else the tmp dir."""
    target = os.environ.get("BAYOU_SCREENSHOTS")
    folder = (ROOT / target if not Path(target).is_absolute() else Path(target)) if target else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _screenshot(page, folder: Path, name: str) -> Path:
    path = folder / f"review-{name}.png"
    page.mouse.move(0, 0)  # no hover effects in the picture
    page.screenshot(path=str(path), animations="disabled", caret="hide")
    # a photographed licence (review-licence.png) is the largest, ~370 KB
    assert 1000 < path.stat().st_size < 500_000, f"{path}: {path.stat().st_size} bytes"
    return path


# --- sample data: receipts that look like receipts ---------------------------------------------------------


def receipt_page(data, number: int, size: tuple[int, int] = (420, 600), boxes: dict | None = None):
    """A receipt printed on a white slip (the fixture's page image, with a receipt's layout). `boxes`, when
    given, gets where each value was printed: {pointer: {page, box, score}}, the shape of Result.locations."""
    from PIL import Image, ImageDraw, ImageFont

    from storage.documents import PageImage

    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    big, font, small = (ImageFont.load_default(size=s) for s in (22, 15, 12))
    data = data if isinstance(data, dict) else {}
    y = 20

    def mark(pointer: str | None, text: str, xy: tuple[float, float], face, anchor: str = "la") -> None:
        if boxes is None or pointer is None or not text:
            return
        x0, y0, x1, y1 = draw.textbbox(xy, text, font=face, anchor=anchor)
        where = [x0 / size[0], y0 / size[1], x1 / size[0], y1 / size[1]]
        boxes[pointer] = {"page": number, "box": [round(v, 4) for v in where], "score": 1.0}

    def line(
        left: str,
        right: str = "",
        *,
        face=font,
        step: int = 22,
        marks: tuple[tuple[str, str], ...] = (),
        right_mark: tuple[str, str] | None = None,
    ) -> None:
        """`marks`: (pointer, text) printed within `left`, found by their place in it; `right_mark`: the
        pointer and text ending `right`."""
        nonlocal y
        draw.text((24, y), left, fill="black", font=face)
        for pointer, text in marks:
            offset = draw.textlength(left[: left.find(text)], font=face) if text in left else 0
            mark(pointer, text, (24 + offset, y), face)
        if right:
            draw.text((size[0] - 24, y), right, fill="black", font=face, anchor="ra")
            if right_mark is not None:
                mark(right_mark[0], right_mark[1], (size[0] - 24, y), face, anchor="ra")
        y += step

    if number > 1:
        line(f"{data.get('merchant_name') or ''} — page {number}", face=small)
        line("Thank you for your visit!", step=28)
        receipt_number = str(data.get("receipt_number") or "")
        line(f"Receipt no. {receipt_number}", face=small, marks=(("/receipt_number", receipt_number),))
        line("Keep this receipt for returns.", face=small)
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        return PageImage(buffer.getvalue(), *size)

    def text(key: str) -> str:
        return str(data.get(key) or "")

    line(text("merchant_name"), face=big, step=32, marks=(("/merchant_name", text("merchant_name")),))
    line(
        text("merchant_address"),
        face=small,
        step=18,
        marks=(("/merchant_address", text("merchant_address")),),
    )
    line(text("merchant_phone"), face=small, step=26, marks=(("/merchant_phone", text("merchant_phone")),))
    line(
        f"{text('transaction_date')}  {text('transaction_time')}",
        f"#{text('receipt_number')}",
        marks=(
            ("/transaction_date", text("transaction_date")),
            ("/transaction_time", text("transaction_time")),
        ),
    )
    draw.line((24, y + 4, size[0] - 24, y + 4), fill="gray")
    y += 14
    for index, item in enumerate(data.get("items") or []):
        description, price = str(item.get("description") or ""), str(item.get("total_price") or "")
        line(
            f"{item.get('quantity') or 1} x {description}",
            price,
            marks=((f"/items/{index}/description", description),),
            right_mark=(f"/items/{index}/total_price", price),
        )
    draw.line((24, y + 4, size[0] - 24, y + 4), fill="gray")
    y += 14
    for key in ("subtotal", "tax", "tip"):
        if data.get(key) is not None:
            line(key.capitalize(), str(data[key]), right_mark=(f"/{key}", str(data[key])))
    line(
        "TOTAL",
        f"{text('currency')} {text('total')}",
        face=big,
        step=36,
        right_mark=("/total", text("total")),
    )
    line(f"Paid by {text('payment_method').replace('_', ' ')}", face=small)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return PageImage(buffer.getvalue(), *size)


def receipt_locations(data: dict, pages: int = 1) -> dict:
    """Where receipt_page prints each value: what a perfect grounding of its pages would give."""
    boxes: dict = {}
    for number in range(1, pages + 1):
        receipt_page(data, number, boxes=boxes)
    return boxes


def misread_receipt(client, receipt: dict) -> str:
    """A needs_review receipt the model misread twice: the total (15.70) and the scone's price (3.52). Its
    pages print the real receipt, so grounding found every value but those two."""
    items = [dict(item) for item in receipt["items"]]
    items[1]["total_price"] = "3.52"
    misread = ["/total", "/items/1/total_price"]
    locations = {p: where for p, where in receipt_locations(receipt, 2).items() if p not in misread}
    drawn = client.review.page_image
    client.review.page_image = lambda _data, number: receipt_page(receipt, number)
    try:
        return client.review.document(
            data={**receipt, "items": items, "total": "15.70"},
            confidence={"/total": 0.31, "/items/1/total_price": 0.38, "/merchant_name": 0.97},
            checks=[
                {
                    "name": "receipt_total_sum",
                    "ok": False,
                    "message": "12.75 + 1.02 + 2.00 = 15.77, not 15.70",
                },
                {"name": "receipt_items_sum", "ok": False, "message": "9.50 + 3.52 = 13.02, not 12.75"},
                {
                    "name": "value_on_page",
                    "ok": False,
                    "message": "not found on the page: " + ", ".join(misread),
                    "fields": misread,
                },
            ],
            pages=2,
            locations=locations,
        )
    finally:
        client.review.page_image = drawn


def reviewed_history(client, receipt: dict) -> None:
    """Receipts approved on the previous days (some with corrections), so the dashboard has a history."""
    from api import reviewing

    today = dt.datetime.now(dt.UTC).replace(hour=10, minute=0, second=0, microsecond=0)
    history = [
        (4, {}),
        (4, {"tip": "2.50"}),
        (3, {"tax": "1.10"}),
        (2, {"total": "15.77", "tax": "1.20"}),
        (2, {}),
        (1, {"merchant_phone": "(207) 555-0124"}),
    ]
    for days_ago, corrections in history:
        extracted = {**receipt, **{key: "0.00" for key in corrections if key in {"tip", "tax"}}}
        document = client.review.document(data=extracted)
        with client.review.state.sessions() as session:
            reviewing.approve(
                session,
                document,
                actor="user:sam@example.com",
                data={**extracted, **corrections},
                via="review_ui",
            )
            run_ids = select(ExtractionRun.id).where(ExtractionRun.document_id == document)
            session.execute(
                update(Score)
                .where(Score.run_id.in_(run_ids))
                .values(created_at=today - dt.timedelta(days=days_ago))
            )
            session.commit()


def approved(client, data: dict) -> str:
    """A document a colleague already approved as extracted."""
    from api import reviewing

    document = client.review.document(data=data)
    with client.review.state.sessions() as session:
        reviewing.approve(session, document, actor="user:sam@example.com", data=None, via="review_ui")
    return document


@pytest.fixture
def desk(review_client, receipt_example):
    """A reviewer's morning: a signed-up reviewer, receipt pages that look like receipts."""
    review_client.review.page_image = receipt_page
    review_client.review.user()
    return review_client


def sign_in(page, email: str = "rita@example.com", password: str = REVIEW_PASSWORD) -> None:
    page.goto("/review/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r"/review/queue"))


def unlabelled(page) -> list[str]:
    return page.evaluate(UNLABELLED_JS)


def dashboard_figures(page) -> dict[str, str]:
    page.goto("/review/dashboard")
    group = page.locator("section.metric-group[data-doc-type=receipt]")
    if not group.count():
        return {}
    return {
        "documents": group.locator("table.overall td.num").first.inner_text(),
        **{
            metric: group.locator(f"td[data-metric={metric}]").inner_text()
            for metric in ("perfect_match_rate", "ted_accuracy", "f1")
        },
    }


def status_of(client, document_id: str) -> str:
    from storage.models import Document

    with client.review.state.sessions() as session:
        return session.get(Document, document_id).status


# --- the tests ---------------------------------------------------------------------------------------------


def test_sign_in_refuses_a_wrong_password(page, desk) -> None:
    from playwright.sync_api import expect

    page.goto("/review/queue")
    expect(page).to_have_url(re.compile(r"/review/login\?next="))
    page.get_by_label("Email").fill("rita@example.com")
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#login-error")).to_have_text("Wrong email or password.")
    expect(page).to_have_url(re.compile(r"/review/login"))
    assert not page.locator("#queue").count()
    # nothing in the queue is reachable without signing in
    assert page.request.get("/review/queue", max_redirects=0).status == 303
    # the email is kept, the password is not; the right one lets her in, back to where she was going
    expect(page.get_by_label("Email")).to_have_value("rita@example.com")
    expect(page.get_by_label("Password")).to_have_value("")
    page.get_by_label("Password").fill(REVIEW_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/review/queue$"))
    expect(page.locator(".topbar .who")).to_have_text("rita@example.com (reviewer)")
    # signing out ends it
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/review/login"))
    page.goto("/review/queue")
    expect(page).to_have_url(re.compile(r"/review/login"))


def test_queue_filters(page, desk, receipt_example, shots: Path) -> None:
    from playwright.sync_api import expect

    wrong = misread_receipt(desk, receipt_example)
    fine = desk.review.document(
        data={**receipt_example, "merchant_name": "Harbor Hardware", "tip": None},
        confidence={"/total": 0.88},
    )
    unsure = desk.review.document(
        data={**receipt_example, "merchant_name": "Corner Deli"}, confidence={"/tax": 0.12}
    )
    licence = desk.review.document(
        data={"family_name": "RIVERA", "given_names": "ANA SOFIA"},
        doc_type="drivers_license",
        confidence={"/date_of_birth": 0.44},
    )
    done = approved(desk, receipt_example)
    sign_in(page)

    rows = page.locator("tr.queue-row")
    expect(rows).to_have_count(4)  # awaiting review: not the approved one
    expect(page.locator(".count .number[data-status=approved]")).to_have_text("1")
    expect(page.locator(".count .number[data-status=needs_review]")).to_have_text("4")
    expect(rows.first).to_have_class(re.compile(r"\bselected\b"))
    expect(rows.first).to_contain_text(wrong)
    assert unlabelled(page) == []
    _screenshot(page, shots, "queue")

    page.get_by_label("Type").select_option("drivers_license")
    page.get_by_role("button", name="Apply").click()
    expect(page).to_have_url(re.compile(r"doc_type=drivers_license"))
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text(licence)

    page.get_by_label("Type").select_option("receipt")
    page.get_by_label("Sort").select_option("confidence")
    page.get_by_role("button", name="Apply").click()
    expect(rows).to_have_count(3)
    order = [rows.nth(i).locator("small").inner_text() for i in range(3)]
    assert order == [unsure, wrong, fine]  # 0.12, 0.31, 0.88
    expect(rows.first.locator("td.num.low")).to_have_text("0.12")

    page.get_by_label("Status", exact=True).select_option("approved")
    page.get_by_role("button", name="Apply").click()
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text(done)

    # dates: nothing was uploaded tomorrow
    tomorrow = (dt.datetime.now(dt.UTC).date() + dt.timedelta(days=1)).isoformat()
    page.goto(f"/review/queue?status=all&date_from={tomorrow}")
    expect(page.locator(".empty")).to_have_text("Nothing matches these filters.")
    # the filters travel to the document and back
    page.goto("/review/queue?doc_type=receipt&sort=confidence")
    rows.first.get_by_role("link").click()
    expect(page).to_have_url(re.compile(rf"/review/documents/{unsure}\?.*sort=confidence"))
    expect(page.locator("#next-link")).to_have_attribute("href", re.compile(wrong))
    page.get_by_role("link", name="← Queue").click()
    expect(page.get_by_label("Sort")).to_have_value("confidence")
    expect(page.get_by_label("Type")).to_have_value("receipt")


def test_correct_a_field_and_a_line_item_approve_and_the_dashboard_moves(
    page, desk, receipt_example, shots: Path
) -> None:
    from playwright.sync_api import expect

    reviewed_history(desk, receipt_example)
    wrong = misread_receipt(desk, receipt_example)
    desk.review.document(data={**receipt_example, "merchant_name": "Harbor Hardware"})
    sign_in(page)
    before = dashboard_figures(page)
    assert before["documents"] == "6"

    page.goto(f"/review/documents/{wrong}")
    expect(page.locator("#status")).to_have_text("needs review")
    page.wait_for_function(
        "() => { const i = document.getElementById('page-image'); return i.complete && i.naturalWidth > 0 }"
    )
    total = page.get_by_role("textbox", name="Total", exact=True)
    expect(total).to_have_value("15.70")
    flagged = page.locator("div.field.flagged", has=total)
    expect(flagged).to_contain_text("low confidence (0.31)")
    expect(flagged).to_contain_text("check receipt_total_sum")
    scone = page.get_by_label("Total price, row 2")
    expect(scone).to_have_value("3.52")
    expect(page.locator("td.flagged", has=scone)).to_contain_text("low confidence (0.38)")
    expect(page.locator("#doc-messages")).to_contain_text("9.50 + 3.52 = 13.02")
    assert unlabelled(page) == []
    # the picture shows a focused field's outline on the page, and the misread total marked as not found
    page.get_by_role("textbox", name="Subtotal", exact=True).focus()
    expect(page.locator("#page-boxes .field-box.active")).to_be_visible()
    expect(flagged.locator(".not-found")).to_have_text("⚠ Not found on the page")
    _screenshot(page, shots, "document")

    # zoom and page switching
    def scale() -> float:
        return page.evaluate(
            "() => new DOMMatrix(getComputedStyle(document.getElementById('page-image')).transform).a"
        )

    fitted = scale()
    page.click("[data-zoom=in]")
    assert scale() > fitted * 1.2
    page.click("[data-zoom=fit]")
    assert abs(scale() - fitted) < 1e-6
    page.click(".page-tab[data-page='2']")
    expect(page.locator("#page-image")).to_have_attribute("src", re.compile(r"/pages/2$"))
    expect(page.get_by_role("button", name="Page 2")).to_have_attribute("aria-pressed", "true")
    expect(page.get_by_role("button", name="Page 1")).to_have_attribute("aria-pressed", "false")

    # a row added then removed leaves the two extracted rows; the new row's cells are labelled too
    rows = page.locator("fieldset.rows tbody tr.row")
    page.get_by_role("button", name="Add a row to Items").click()
    expect(rows).to_have_count(3)
    expect(page.get_by_label("Description, row 3")).to_be_focused()
    assert page.locator("[name='/items/2/description']").count() == 1
    assert unlabelled(page) == []
    page.get_by_role("button", name="Remove row 3").click()
    expect(rows).to_have_count(2)

    scone.fill("3.25")
    total.fill("15.77")
    page.get_by_role("button", name="Approve (a)").click()

    expect(page.locator("#status")).to_have_text("approved")
    expect(page.locator(".notice")).to_have_text("Document approved.")
    expect(page.locator("#audit")).to_contain_text("review.approve")
    expect(page.locator("#audit")).to_contain_text("/items/1/total_price")
    expect(page.locator("#review-summary")).to_contain_text("with corrections by user:rita@example.com")
    with desk.review.state.sessions() as session:
        review = session.scalar(select(Review).where(Review.document_id == wrong))
        assert review.corrected_data["total"] == "15.77"
        assert review.corrected_data["items"][1]["total_price"] == "3.25"
        assert review.corrected_data["items"][0] == receipt_example["items"][0]

    after = dashboard_figures(page)
    assert after["documents"] == "7"
    assert after != before
    assert float(after["perfect_match_rate"]) < float(before["perfect_match_rate"])  # this one was corrected
    chart = page.locator("section.metric-group[data-doc-type=receipt] svg.chart")
    expect(chart.locator("polyline")).to_have_count(3)
    names = page.locator("#corrected-fields code").all_inner_texts()
    # approvals as extracted correct nothing (they once showed up as a nameless field)
    assert sorted(names) == sorted(["tip", "tax", "merchant_phone", "total", "items[].total_price"])
    assert unlabelled(page) == []
    _screenshot(page, shots, "dashboard")


# the active outline's place in fractions of the page image as drawn: what the reviewer sees, whatever the zoom
OUTLINE_JS = """() => {
  const box = document.querySelector('#page-boxes .field-box.active');
  const image = document.getElementById('page-image');
  if (!box || box.hidden) return null;
  const b = box.getBoundingClientRect(), i = image.getBoundingClientRect();
  return {pointer: box.dataset.pointer, label: box.querySelector('.box-label').innerText,
          box: [(b.left - i.left) / i.width, (b.top - i.top) / i.height,
                (b.right - i.left) / i.width, (b.bottom - i.top) / i.height]};
}"""


def outline(page) -> dict | None:
    return page.evaluate(OUTLINE_JS)


def wait_for_page_image(page, number: int) -> None:
    page.wait_for_function(
        "(n) => { const i = document.getElementById('page-image');"
        " return i.src.endsWith('/pages/' + n) && i.complete && i.naturalWidth > 0 }",
        arg=number,
    )


def assert_outlined(page, pointer: str, where: dict, label: str) -> None:
    """The outline is on, around `where` (a location: page and box), on that page, named `label`."""
    from playwright.sync_api import expect

    expect(page.locator(f".page-tab[data-page='{where['page']}']")).to_have_attribute("aria-pressed", "true")
    wait_for_page_image(page, where["page"])
    active = page.locator("#page-boxes .field-box.active")
    expect(active).to_have_count(1)
    expect(active).to_be_visible()
    expect(active.locator(".box-label")).to_have_text(label)
    shown = outline(page)
    assert shown is not None and shown["pointer"] == pointer
    assert shown["box"] == pytest.approx(where["box"], abs=0.01), pointer


def test_focusing_a_field_outlines_its_box_on_its_page_and_hovering_a_box_names_it(
    page, desk, receipt_example
) -> None:
    from playwright.sync_api import expect

    wrong = misread_receipt(desk, receipt_example)
    drawn = receipt_locations(receipt_example, 2)
    sign_in(page)
    page.goto(f"/review/documents/{wrong}")
    wait_for_page_image(page, 1)
    expect(page.locator("#page-boxes .field-box.active")).to_have_count(
        0
    )  # nothing focused, nothing outlined

    # a field on page 1, then a line item's cell
    page.get_by_role("textbox", name="Subtotal", exact=True).focus()
    assert_outlined(page, "/subtotal", drawn["/subtotal"], "Subtotal")
    expect(page.locator("#viewer-status")).to_have_text("Subtotal: page 1")
    page.get_by_label("Description, row 2").focus()
    assert_outlined(page, "/items/1/description", drawn["/items/1/description"], "Items row 2 › Description")

    # hovering a box names its field, and shows which field in the form it is
    phone_box = page.locator("#page-boxes .field-box[data-pointer='/merchant_phone']")
    expect(phone_box.locator(".box-label")).to_be_hidden()
    phone_box.hover()
    expect(phone_box.locator(".box-label")).to_be_visible()
    expect(phone_box.locator(".box-label")).to_have_text("Merchant phone")
    phone = page.locator("div.field", has=page.get_by_role("textbox", name="Merchant phone"))
    expect(phone).to_have_class(re.compile(r"\bbox-hover\b"))
    page.mouse.move(0, 0)
    expect(phone).not_to_have_class(re.compile(r"\bbox-hover\b"))
    # clicking a box goes to its field
    page.locator("#page-boxes .field-box[data-pointer='/tax']").click()
    expect(page.get_by_role("textbox", name="Tax", exact=True)).to_be_focused()
    assert_outlined(page, "/tax", drawn["/tax"], "Tax")

    # the receipt number is printed on page 2: focusing it turns the page; a field of page 1 turns it back
    page.get_by_role("textbox", name="Receipt number").focus()
    assert_outlined(page, "/receipt_number", drawn["/receipt_number"], "Receipt number")
    expect(page.locator("#page-image")).to_have_attribute("src", re.compile(r"/pages/2$"))
    expect(page.locator("#page-boxes .field-box[data-pointer='/subtotal']")).to_be_hidden()  # page 1's
    page.get_by_role("textbox", name="Merchant name").focus()
    assert_outlined(page, "/merchant_name", drawn["/merchant_name"], "Merchant name")

    # zoomed in, the outline stays on its words (boxes are fractions of the page)
    page.click("[data-zoom=in]")
    page.click("[data-zoom=in]")
    assert outline(page)["box"] == pytest.approx(drawn["/merchant_name"]["box"], abs=0.01)
    page.click("[data-zoom=fit]")

    # the values the check did not find are marked in words, and a screen reader hears it with the field
    for name, holder in (
        ("Total", page.locator("div.field", has=page.get_by_role("textbox", name="Total", exact=True))),
        ("Total price, row 2", page.locator("td", has=page.get_by_label("Total price, row 2"))),
    ):
        mark = holder.locator(".not-found")
        expect(mark).to_have_text("⚠ Not found on the page")
        control = holder.locator("input")
        assert mark.get_attribute("id") in (control.get_attribute("aria-describedby") or "").split(), name
    assert (
        not page.locator("div.field", has=page.get_by_role("textbox", name="Subtotal"))
        .locator(".not-found")
        .count()
    )
    # a value not on the page has no outline; the viewer says why
    page.get_by_role("textbox", name="Total", exact=True).focus()
    expect(page.locator("#page-boxes .field-box.active")).to_have_count(0)
    expect(page.locator("#viewer-status")).to_have_text("Total: not found on the page")
    assert unlabelled(page) == []


def grounded_licence(client, misread: dict) -> tuple[str, Result]:
    """The committed sample licence l001 (front and back) as the model misread it (`misread`: the fields
    it got wrong), with real grounding: Tesseract's words locate the values and zxing-cpp decodes the
    back's AAMVA barcode, whose values become the suggestions."""
    import json

    from PIL import Image

    from extractor.grounding.barcode import barcode_check, read_licence_barcode
    from extractor.grounding.locate import leaves
    from extractor.grounding.verify import ground
    from extractor.ocr import read_words
    from storage.documents import PageImage

    rows = [json.loads(line) for line in (SAMPLES / "metadata.jsonl").read_text().splitlines()]
    sample = next(row for row in rows if row.get("file_names", [""])[0] == "licences/l001_front.jpg")
    images = [Image.open(SAMPLES / name).convert("RGB") for name in sample["file_names"]]
    data = {**sample["ground_truth"], **misread}
    result = Result(
        doc_type="drivers_license",
        model="m",
        data=data,
        valid=True,
        confidence={pointer: 0.9 for pointer, _ in leaves(data)},
    )
    check, _ = barcode_check(data, read_licence_barcode(images))
    result.checks.append(check)
    ground(result, [read_words(image) for image in images])

    def page_image(_data, number: int) -> PageImage:
        buffer = io.BytesIO()
        images[number - 1].save(buffer, format="PNG")
        return PageImage(buffer.getvalue(), *images[number - 1].size)

    drawn = client.review.page_image
    client.review.page_image = page_image
    try:
        document = client.review.document(
            data=data,
            doc_type="drivers_license",
            confidence=result.confidence,
            checks=result.checks,
            pages=len(images),
            locations=result.locations,
        )
    finally:
        client.review.page_image = drawn
    return document, result


@needs_tesseract
def test_a_barcode_suggestion_is_taken_with_one_key_on_a_grounded_licence(page, desk, shots: Path) -> None:
    from playwright.sync_api import expect

    truth = {"family_name": "MOORE", "date_of_birth": "1958-04-13"}
    document, result = grounded_licence(desk, {"family_name": "SMYTHE", "date_of_birth": "1958-04-18"})
    barcode = next(c for c in result.checks if c["name"] == "license_barcode_agrees")
    assert barcode["suggestions"] == {"/family_name": "MOORE", "/date_of_birth": "1958-04-13"}
    missing = next(c for c in result.checks if c["name"] == "value_on_page")["fields"]
    assert "/family_name" in missing  # SMYTHE is printed nowhere on the card
    located = [p for p in ("/given_names", "/document_number", "/address/city") if p in result.locations]
    assert located, f"Tesseract located none of the licence's names: {sorted(result.locations)}"

    sign_in(page)
    page.goto(f"/review/documents/{document}")
    wait_for_page_image(page, 1)
    family = page.get_by_role("textbox", name="Family name")
    birth = page.get_by_label("Date of birth")
    family_field = page.locator("div.field", has=family)
    expect(family).to_have_value("SMYTHE")
    expect(family_field.locator(".not-found")).to_have_text("⚠ Not found on the page")
    expect(family_field.locator(".suggestion")).to_contain_text("Barcode: MOORE")
    for pointer in missing:  # every field the check named is marked
        expect(page.locator(f"[id='f{pointer.replace('/', '-')}-nf']")).to_be_visible()

    # a located field outlines where Tesseract found it, turning back from the barcode's page
    page.get_by_role("button", name="Page 2").click()
    wait_for_page_image(page, 2)
    first = located[0]
    page.locator(f"[name='{first}']").focus()
    label = page.locator(f"#page-boxes .field-box[data-pointer='{first}'] .box-label").inner_text()
    assert_outlined(page, first, result.locations[first], label)
    _screenshot(page, shots, "licence")

    # "b" takes the barcode's value for the field last focused ...
    birth.focus()
    page.keyboard.press("Escape")
    page.keyboard.press("b")
    expect(birth).to_have_value(truth["date_of_birth"])
    expect(family).to_have_value("SMYTHE")
    expect(page.locator("div.field", has=birth).locator(".suggestion")).to_have_class(
        re.compile(r"\btaken\b")
    )
    # ... else the next one offered, and the reviewer still saves
    page.keyboard.press("b")
    expect(family).to_have_value(truth["family_name"])
    expect(page.locator("#viewer-status")).to_contain_text("Family name: the barcode's value is in the field")
    expect(page.locator("#status")).to_have_text("needs review")
    # a click on the suggestion's button does the same
    family.fill("SMYTHE")
    expect(family_field.locator(".suggestion")).not_to_have_class(re.compile(r"\btaken\b"))
    page.get_by_role("button", name="Use the barcode's value for Family name (b)").click()
    expect(family).to_have_value(truth["family_name"])
    assert unlabelled(page) == []
    page.get_by_role("button", name="Approve (a)").click()
    expect(page.locator("#status")).to_have_text("approved")
    with desk.review.state.sessions() as session:
        review = session.scalar(select(Review).where(Review.document_id == document))
        assert {key: review.corrected_data[key] for key in truth} == truth


def test_reject_with_a_reason(page, desk, receipt_example) -> None:
    from playwright.sync_api import expect

    blurry = desk.review.document(data={**receipt_example, "merchant_name": None}, confidence={"/total": 0.2})
    sign_in(page)
    page.goto(f"/review/documents/{blurry}")
    # no reason, no rejection: the browser asks for one first
    page.get_by_role("button", name="Reject (r)").click()
    assert page.get_by_label("Reject with reason").evaluate("(el) => el.validity.valueMissing")
    expect(page.locator("#status")).to_have_text("needs review")
    page.get_by_label("Reject with reason").fill("Photo too blurry to read the totals")
    page.get_by_role("button", name="Reject (r)").click()
    expect(page.locator("#status")).to_have_text("rejected")
    expect(page.locator(".notice")).to_have_text("Document rejected.")
    expect(page.locator("#review-summary")).to_contain_text("“Photo too blurry to read the totals”")
    expect(page.locator("#audit")).to_contain_text("review.reject")
    # reviewed: the form is read-only and there is nothing left to approve or reject
    expect(page.locator("[name='/total']")).to_be_disabled()
    expect(page.get_by_role("button", name="Add a row to Items")).to_be_disabled()
    assert not page.locator("#approve, #reject").count()
    with desk.review.state.sessions() as session:
        review = session.scalar(select(Review).where(Review.document_id == blurry))
        assert (review.action, review.reason) == ("reject", "Photo too blurry to read the totals")


def test_posts_without_the_csrf_token_are_refused(page, desk, receipt_example) -> None:
    from playwright.sync_api import expect

    document = misread_receipt(desk, receipt_example)
    # signing in needs the form's token too
    answer = page.request.post(
        "/review/login", form={"email": "rita@example.com", "password": REVIEW_PASSWORD}, max_redirects=0
    )
    assert answer.status == 403
    sign_in(page)
    # a forged post with the session's cookie but no token (what another site's form would send)
    for form in ({}, {"csrf_token": "forged"}):
        for action, extra in (("approve", {"/total": "1.00"}), ("reject", {"reason": "spam"})):
            answer = page.request.post(
                f"/review/documents/{document}/{action}", form={**form, **extra}, max_redirects=0
            )
            assert answer.status == 403, (action, form)
            assert "did not come from this site" in answer.text()
    # the page's own form, its token removed
    page.goto(f"/review/documents/{document}")
    page.locator("#approve-form input[name=csrf_token]").evaluate("(el) => el.remove()")
    page.get_by_role("button", name="Approve (a)").click()
    expect(page.locator("p.error")).to_contain_text("the form has expired or did not come from this site")
    assert status_of(desk, document) == "needs_review"
    # sign-out is a POST as well
    assert page.request.post("/review/logout", form={}, max_redirects=0).status == 403
    page.goto("/review/queue")
    expect(page.locator("#queue")).to_be_visible()


def test_a_reviewer_cannot_reach_admin_pages(page, desk, receipt_example) -> None:
    from playwright.sync_api import expect

    approved(desk, receipt_example)
    sign_in(page)
    expect(page.locator(".topbar nav")).not_to_contain_text("Export")
    expect(page.locator(".topbar nav")).not_to_contain_text("Users")
    token = page.locator("input[name=csrf_token]").first.get_attribute("value")
    answer = page.goto("/review/export?format=csv")
    assert answer.status == 403
    expect(page.locator("p.error")).to_have_text("this page is for admins")
    assert page.request.get("/review/export?format=jsonl").status == 403
    for path in ("/review/admin/users", "/review/admin"):
        answer = page.goto(path)
        assert answer.status == 403, path
        expect(page.locator("p.error")).to_have_text("this page is for admins")
        assert not page.locator("#users, #new-user").count()
    # her own valid token does not make an admin's post of hers go through
    answer = page.request.post(
        "/review/admin/users",
        form={"csrf_token": token, "email": "eve@example.com", "role": "admin", "password": "x" * 12},
        max_redirects=0,
    )
    assert answer.status == 403
    with desk.review.state.sessions() as session:
        assert session.scalar(select(User).where(User.email == "eve@example.com")) is None

    # an admin, in a browser of her own, sees the links and gets the file
    desk.review.user("ada@example.com", role="admin")
    admin = page.context.browser.new_context(viewport=VIEWPORT, base_url=page.url.split("/review")[0])
    try:
        other = admin.new_page()
        sign_in(other, "ada@example.com")
        expect(other.get_by_role("link", name="Export CSV")).to_be_visible()
        answer = other.request.get("/review/export?format=csv")
        assert answer.status == 200
        assert "Blue Fern Cafe" in answer.text()
    finally:
        admin.close()


def test_an_admin_creates_a_reviewer_then_disables_them(page, desk, shots: Path) -> None:
    """Ada creates Sam's account, Sam signs in; Ada disables it: Sam's open page and a new sign-in fail."""
    from playwright.sync_api import expect

    desk.review.user("ada@example.com", role="admin")
    sign_in(page, "ada@example.com")
    page.get_by_role("link", name="Users").click()
    expect(page).to_have_url(re.compile(r"/review/admin/users$"))
    expect(page.locator("#users tr.user-row")).to_have_count(2)  # ada, rita
    assert unlabelled(page) == []
    form = page.locator("#new-user")
    form.get_by_label("Email").fill("sam@example.com")
    form.get_by_label("Role", exact=True).select_option("reviewer")
    form.get_by_label("Password").fill("sam's long password")
    form.get_by_role("button", name="Create account").click()
    expect(page.locator("#notice")).to_have_text("Account created.")
    row = page.locator("#users tr.user-row[data-email='sam@example.com']")
    expect(row).to_contain_text("active")
    expect(page.get_by_label("Role of sam@example.com", exact=True)).to_have_value("reviewer")
    expect(page.locator("#user-audit")).to_contain_text("user.create")
    assert "$argon2" not in page.content()

    sam = page.context.browser.new_context(viewport=VIEWPORT, base_url=page.url.split("/review")[0])
    try:
        other = sam.new_page()
        sign_in(other, "sam@example.com", "sam's long password")
        expect(other.locator(".topbar .who")).to_have_text("sam@example.com (reviewer)")

        page.get_by_role("button", name="Disable sam@example.com").click()
        expect(page.locator("#notice")).to_contain_text("Account disabled")
        expect(row).to_contain_text("disabled")
        expect(page.locator("#user-audit")).to_contain_text("user.disable")
        _screenshot(page, shots, "users")

        # Sam's open session ends: the next page is the sign-in form, and signing in again is refused
        other.reload()
        expect(other).to_have_url(re.compile(r"/review/login"))
        other.get_by_label("Email").fill("sam@example.com")
        other.get_by_label("Password").fill("sam's long password")
        other.get_by_role("button", name="Sign in").click()
        expect(other.locator("#login-error")).to_have_text(
            "This account is disabled: ask an admin to enable it."
        )
        expect(other).to_have_url(re.compile(r"/review/login"))
        assert other.request.get("/review/queue", max_redirects=0).status == 303
    finally:
        sam.close()

    # no button to disable oneself
    assert not page.get_by_role("button", name="Disable ada@example.com").count()
    page.get_by_role("button", name="Enable sam@example.com").click()
    expect(page.locator("#notice")).to_have_text("Account enabled.")
    expect(row).to_contain_text("active")


def test_keyboard_only(page, desk, receipt_example) -> None:
    """Sign in, pick a document, correct a field, approve, go to the next one and reject it: keys only."""
    from playwright.sync_api import expect

    wrong = misread_receipt(desk, receipt_example)
    second = desk.review.document(data={**receipt_example, "merchant_name": "Corner Deli"})
    third = desk.review.document(data={**receipt_example, "merchant_name": "Harbor Hardware"})
    keys = page.keyboard

    page.goto("/review/login")
    assert unlabelled(page) == []
    expect(page.get_by_label("Email")).to_be_focused()  # autofocus
    keys.type("rita@example.com")
    keys.press("Tab")
    expect(page.get_by_label("Password")).to_be_focused()
    keys.type(REVIEW_PASSWORD)
    keys.press("Enter")
    expect(page).to_have_url(re.compile(r"/review/queue$"))
    page.wait_for_load_state()
    assert unlabelled(page) == []

    rows = page.locator("tr.queue-row")
    expect(rows.nth(0)).to_have_attribute("aria-current", "true")
    keys.press("j")
    keys.press("j")
    expect(rows.nth(2)).to_have_class(re.compile(r"\bselected\b"))
    keys.press("k")
    keys.press("k")
    expect(rows.nth(0)).to_have_attribute("aria-current", "true")
    # Enter on a focused button does the button's job, not "open the selected row"
    page.get_by_label("Sort").select_option("confidence")
    page.get_by_role("button", name="Apply").focus()
    keys.press("Enter")
    expect(page).to_have_url(re.compile(r"/review/queue\?.*sort=confidence"))
    page.wait_for_load_state()
    page.goto("/review/queue")
    page.wait_for_load_state()
    keys.press("j")
    keys.press("Enter")
    expect(page).to_have_url(re.compile(rf"/review/documents/{second}"))
    page.wait_for_load_state()
    keys.press("p")
    expect(page).to_have_url(re.compile(rf"/review/documents/{wrong}"))
    page.wait_for_load_state()
    assert unlabelled(page) == []

    # Tab reaches the total; typing there is not a shortcut; Esc leaves the field, then "a" approves
    for _ in range(80):
        keys.press("Tab")
        if page.evaluate("() => document.activeElement && document.activeElement.name") == "/total":
            break
    else:
        pytest.fail("Tab never reached the total")
    keys.press("Control+a")
    keys.type("15.77")  # contains no shortcut letters; "a" would be one outside a field
    expect(page.get_by_role("textbox", name="Total", exact=True)).to_have_value("15.77")
    expect(page.locator("#status")).to_have_text("needs review")
    keys.press("Escape")
    keys.press("a")
    expect(page.locator("#status")).to_have_text("approved")
    page.wait_for_load_state()
    with desk.review.state.sessions() as session:
        review = session.scalar(select(Review).where(Review.document_id == wrong))
        assert review.corrected_data["total"] == "15.77"

    # "n": the next one in the queue; "r" focuses the reason, Esc then "r" again sends it
    keys.press("n")
    expect(page).to_have_url(re.compile(rf"/review/documents/{second}"))
    page.wait_for_load_state()
    keys.press("r")
    expect(page.get_by_label("Reject with reason")).to_be_focused()
    keys.type("duplicate of an earlier upload")
    keys.press("Escape")
    keys.press("r")
    expect(page.locator("#status")).to_have_text("rejected")
    page.wait_for_load_state()
    assert status_of(desk, second) == "rejected"
    keys.press("n")
    expect(page).to_have_url(re.compile(rf"/review/documents/{third}"))
    page.wait_for_load_state()
    # the two before it are reviewed: nothing left behind it in the queue
    assert not page.locator("#prev-link").count()
    # zoom keys
    page.wait_for_function("() => document.getElementById('page-image').naturalWidth > 0")
    before = page.evaluate("() => getComputedStyle(document.getElementById('page-image')).transform")
    keys.press("+")
    assert page.evaluate("() => getComputedStyle(document.getElementById('page-image')).transform") != before
    keys.press("0")
    assert page.evaluate("() => getComputedStyle(document.getElementById('page-image')).transform") == before
    # Tab reaches the page image; the arrow keys pan it
    for _ in range(20):
        keys.press("Tab")
        if page.evaluate("() => document.activeElement.classList.contains('viewport')"):
            break
    else:
        pytest.fail("Tab never reached the page image")
    keys.press("ArrowLeft")
    keys.press("ArrowUp")
    moved = page.evaluate(
        "() => { const m = new DOMMatrix(getComputedStyle(document.getElementById('page-image')).transform);"
        " return [m.e, m.f] }"
    )
    start = page.evaluate("(t) => { const m = new DOMMatrix(t); return [m.e, m.f] }", before)
    assert moved == pytest.approx([start[0] + 40, start[1] + 40])

    page.goto("/review/dashboard")
    assert unlabelled(page) == []
