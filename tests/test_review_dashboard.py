"""The accuracy dashboard shows the stored scores, per type and model, per day, and the corrected fields."""

from __future__ import annotations

import datetime as dt
import re

from sqlalchemy import select

from storage.models import ExtractionRun, Review, Score


def add_score(
    client, document_id: str, *, day: dt.date, ted: float, f1: float, perfect: bool, source="reviewed"
):
    with client.review.state.sessions() as session:
        run = session.scalar(select(ExtractionRun).where(ExtractionRun.document_id == document_id))
        session.add(
            Score(
                run_id=run.id,
                ground_truth_source=source,
                ted_accuracy=ted,
                f1=f1,
                perfect_match=perfect,
                created_at=dt.datetime.combine(day, dt.time(12), tzinfo=dt.UTC),
            )
        )
        session.commit()


def test_the_dashboard_shows_the_stored_numbers(review_client, receipt_example) -> None:
    review_client.review.user()
    review_client.review.sign_in()
    one = review_client.review.document(data=receipt_example)
    two = review_client.review.document(data={**receipt_example, "tip": None})
    licence = review_client.review.document(data={"family_name": "RIVERA"}, doc_type="drivers_license")
    add_score(review_client, one, day=dt.date(2026, 3, 1), ted=1.0, f1=1.0, perfect=True)
    add_score(review_client, two, day=dt.date(2026, 3, 2), ted=0.5, f1=0.25, perfect=False)
    add_score(review_client, licence, day=dt.date(2026, 3, 2), ted=0.125, f1=0.375, perfect=False)
    add_score(review_client, licence, day=dt.date(2026, 3, 2), ted=0.0, f1=0.0, perfect=False, source="given")
    html = review_client.get("/review/dashboard").text
    receipt = html[html.index('data-doc-type="receipt"') :]
    receipt = receipt[: receipt.index("</section>")]
    assert "receipt · h2ovl-800m" in receipt
    assert '<td class="num" data-metric="perfect_match_rate">0.500</td>' in receipt
    assert '<td class="num" data-metric="ted_accuracy">0.750</td>' in receipt
    assert '<td class="num" data-metric="f1">0.625</td>' in receipt
    assert "2026-03-01" in receipt and "2026-03-02" in receipt
    assert receipt.count("<polyline") == 3
    assert receipt.count("<circle") == 6  # two days, three metrics
    licence_part = html[html.index('data-doc-type="drivers_license"') :]
    assert '<td class="num" data-metric="ted_accuracy">0.125</td>' in licence_part
    # the "given" score is left out unless asked for
    everything = review_client.get("/review/dashboard?source=all").text
    licence_all = everything[everything.index('data-doc-type="drivers_license"') :]
    assert '<td class="num" data-metric="ted_accuracy">0.062</td>' in licence_all


def test_fields_most_often_corrected(review_client, receipt_example) -> None:
    review_client.review.user()
    review_client.review.sign_in()
    documents = [review_client.review.document(data={**receipt_example, "tax": f"1.0{n}"}) for n in range(3)]
    with review_client.review.state.sessions() as session:
        for n, document_id in enumerate(documents):
            corrected = {**receipt_example, "tax": "1.02"}
            if n == 0:
                corrected["items"] = [
                    dict(receipt_example["items"][0], total_price="9.95"),
                    receipt_example["items"][1],
                ]
            session.add(
                Review(document_id=document_id, actor="user:x", action="approve", corrected_data=corrected)
            )
        session.commit()
    html = review_client.get("/review/dashboard").text
    table = html[html.index('id="corrected-fields"') :]
    # n == 2 had tax 1.02 already: two documents had their tax corrected, one its item price
    assert '<td><code>tax</code></td><td class="num">2</td>' in table
    assert '<td><code>items[].total_price</code></td><td class="num">1</td>' in table
    assert table.index("tax") < table.index("items[].total_price")
    # and as a bar chart: one bar each, the longest for the most corrected field
    chart = html[html.index('<svg class="chart bars"') :]
    chart = chart[: chart.index("</svg>")]
    widths = [float(w) for w in re.findall(r'<rect class="bar" [^>]*width="([0-9.]+)"', chart)]
    assert len(widths) == 2 and widths[0] == 2 * widths[1]
    assert "receipt · tax: 2" in chart and "receipt · items[].total_price: 1" in chart


def test_an_empty_dashboard_says_so(review_client) -> None:
    review_client.review.user()
    review_client.review.sign_in()
    assert "No scores yet" in review_client.get("/review/dashboard").text
