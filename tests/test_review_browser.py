"""The review UI in a real browser (Debian's chromium + chromedriver, driven by selenium): sign in, open the
queue, open a document with the keyboard, change a field, approve, see the status. Screenshots go to the
test's tmp dir."""

from __future__ import annotations

import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from storage.models import Review
from tests.conftest import REVIEW_PASSWORD

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


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


@pytest.fixture
def browser() -> Iterator[object]:
    webdriver = pytest.importorskip(
        "selenium.webdriver", reason="selenium is not installed (pip install selenium)"
    )
    from selenium.common.exceptions import WebDriverException

    if not Path(CHROMIUM).exists() or not Path(CHROMEDRIVER).exists():
        pytest.skip(
            f"no Chromium/chromedriver at {CHROMIUM} / {CHROMEDRIVER} (apt-get install chromium chromium-driver)"
        )
    profile = tempfile.mkdtemp(prefix="bayou-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={profile}",
        "--window-size=1440,1000",
    ):
        options.add_argument(argument)
    try:
        driver = webdriver.Chrome(
            options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER)
        )
    except WebDriverException as exc:
        shutil.rmtree(profile, ignore_errors=True)
        pytest.skip(f"Chromium could not be started: {exc.msg}")
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def test_sign_in_open_correct_and_approve(
    served: str, browser, review_client, receipt_example, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    driver = browser
    wait = WebDriverWait(driver, 15)
    review_client.review.user()
    wrong = review_client.review.document(
        data={**receipt_example, "total": "15.70"},
        confidence={"/total": 0.31},
        checks=[
            {"name": "receipt_total_sum", "ok": False, "message": "12.75 + 1.02 + 2.00 = 15.77, not 15.70"}
        ],
        pages=2,
    )
    second = review_client.review.document(data={**receipt_example, "tip": None})

    driver.get(f"{served}/review/queue")
    wait.until(ec.presence_of_element_located((By.ID, "sign-in")))
    driver.find_element(By.ID, "email").send_keys("rita@example.com")
    driver.find_element(By.ID, "password").send_keys(REVIEW_PASSWORD)
    driver.find_element(By.ID, "sign-in").click()

    wait.until(ec.presence_of_element_located((By.ID, "queue")))
    assert driver.current_url.endswith("/review/queue")
    first = driver.find_elements(By.CSS_SELECTOR, "tr.queue-row")[0]
    assert "selected" in first.get_attribute("class")
    assert wrong in first.text
    driver.save_screenshot(str(tmp_path / "queue.png"))
    # the keyboard opens the selected row
    driver.find_element(By.TAG_NAME, "body").send_keys(Keys.ENTER)

    wait.until(ec.presence_of_element_located((By.ID, "approve-form")))
    assert f"/review/documents/{wrong}" in driver.current_url
    wait.until(
        lambda d: d.execute_script(
            "const i = document.getElementById('page-image'); return i.complete && i.naturalWidth > 0"
        )
    )
    total = driver.find_element(By.NAME, "/total")
    assert total.get_attribute("value") == "15.70"
    flagged = total.find_element(By.XPATH, "./ancestor::div[contains(@class, 'field')]")
    assert "flagged" in flagged.get_attribute("class")
    assert "low confidence (0.31)" in flagged.text
    driver.save_screenshot(str(tmp_path / "document.png"))

    # zoom and page switching
    def scale() -> float:
        return driver.execute_script(
            "return new DOMMatrix(getComputedStyle(document.getElementById('page-image')).transform).a"
        )

    fitted = scale()
    driver.find_element(By.CSS_SELECTOR, "[data-zoom=in]").click()
    assert scale() > fitted * 1.2
    driver.find_element(By.CSS_SELECTOR, "[data-zoom=fit]").click()
    assert abs(scale() - fitted) < 1e-6
    driver.find_element(By.CSS_SELECTOR, ".page-tab[data-page='2']").click()
    wait.until(lambda d: d.find_element(By.ID, "page-image").get_attribute("src").endswith("/pages/2"))
    # line items: a row added then removed leaves the two extracted rows
    driver.find_element(By.CSS_SELECTOR, "fieldset.rows .add-row").click()
    assert len(driver.find_elements(By.CSS_SELECTOR, "fieldset.rows tbody tr.row")) == 3
    assert driver.find_elements(By.NAME, "/items/2/description")
    driver.find_elements(By.CSS_SELECTOR, "fieldset.rows tbody .remove-row")[-1].click()
    assert len(driver.find_elements(By.CSS_SELECTOR, "fieldset.rows tbody tr.row")) == 2

    total.clear()
    total.send_keys("15.77")
    driver.find_element(By.ID, "approve").click()

    wait.until(ec.text_to_be_present_in_element((By.ID, "status"), "approved"))
    assert "Document approved." in driver.find_element(By.CSS_SELECTOR, ".notice").text
    assert "review.approve" in driver.find_element(By.ID, "audit").text
    driver.save_screenshot(str(tmp_path / "approved.png"))
    with review_client.review.state.sessions() as session:
        review = session.scalar(select(Review).where(Review.document_id == wrong))
        assert review.corrected_data["total"] == "15.77"
    # n opens the next document in the queue
    driver.find_element(By.TAG_NAME, "body").send_keys("n")
    wait.until(lambda d: d.current_url.split("?")[0].endswith(f"/review/documents/{second}"))
    driver.get(f"{served}/review/dashboard")
    chart = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "svg.chart")))
    assert len(chart.find_elements(By.TAG_NAME, "polyline")) == 3
    driver.save_screenshot(str(tmp_path / "dashboard.png"))
    for name in ("queue.png", "document.png", "approved.png", "dashboard.png"):
        assert (tmp_path / name).stat().st_size > 1000
