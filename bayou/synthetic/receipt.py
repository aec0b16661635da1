"""Receipts: the sale (ground truth) first, then its printout as text lines, then a thermal-paper image."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import ROUND_CEILING, Decimal
from typing import Any

from bayou.synthetic.catalog import CATEGORIES, MALAYSIA_CITIES, Category, Product
from bayou.synthetic.common import CAPTURES, SyntheticDocument, money, page_boxes, to_cents
from bayou.synthetic.people import phone_number, street_address
from bayou.synthetic.receipt_render import PrintLine, render_receipt, tail, whole
from extractor.jurisdictions import JURISDICTIONS

SHORT_ITEMS = 3
LONG_ITEMS = 30
_US_TAX_RATES = ("6.00", "6.25", "6.50", "7.00", "7.25", "7.50", "8.00", "8.25", "8.875", "9.50")
_CASHIERS = ("MARIA", "DEVON", "ASHLEY", "KEVIN", "PRIYA", "CARLOS", "EMILY", "JOSE", "WEI")


@dataclass
class Item:
    description: str
    quantity: Decimal
    unit_price: Decimal
    total: Decimal
    by_weight: bool

    def truth(self, quantities_printed: bool) -> dict[str, Any]:
        shown = quantities_printed or self.quantity != 1 or self.by_weight
        return {
            "description": self.description,
            "quantity": (float(self.quantity) if self.by_weight else int(self.quantity)) if shown else None,
            "unit_price": money(self.unit_price) if shown else None,
            "total_price": money(self.total),
        }


@dataclass
class Sale:
    """Everything printed on the receipt, including what the ground truth leaves out."""

    merchant: str
    address_lines: list[str]
    phone: str
    currency: str
    items: list[Item]
    tax_label: str
    tax_rate: Decimal
    tip: Decimal | None
    payment_method: str
    payment_label: str
    moment: datetime
    receipt_number: str
    receipt_label: str
    cashier: str
    tendered: Decimal | None = None
    layout: str = "at"  # "at": "2 @ 1.19" under the item; "columns": QTY/ITEM/PRICE/AMOUNT table
    date_style: str = "us"

    @property
    def subtotal(self) -> Decimal:
        return sum((item.total for item in self.items), Decimal("0"))

    @property
    def tax(self) -> Decimal:
        return to_cents(self.subtotal * self.tax_rate / 100)

    @property
    def total(self) -> Decimal:
        return self.subtotal + self.tax + (self.tip or Decimal("0"))

    def ground_truth(self) -> dict[str, Any]:
        columns = self.layout == "columns"
        return {
            "merchant_name": self.merchant,
            "merchant_address": ", ".join(self.address_lines),
            "merchant_phone": self.phone,
            "transaction_date": self.moment.date().isoformat(),
            "transaction_time": self.moment.strftime("%H:%M"),
            "receipt_number": self.receipt_number,
            "currency": self.currency,
            "items": [item.truth(columns) for item in self.items],
            "subtotal": money(self.subtotal),
            "tax": money(self.tax),
            "tip": money(self.tip) if self.tip is not None else None,
            "total": money(self.total),
            "payment_method": self.payment_method,
        }


def _price(rng: random.Random, product: Product) -> Decimal:
    return Decimal(f"{rng.uniform(product.low, product.high):.2f}")


def _item(rng: random.Random, product: Product, max_description: int) -> Item:
    unit = _price(rng, product)
    description = product.name[:max_description]
    if product.by_weight:
        weight = Decimal(f"{rng.uniform(0.3, 3.5):.2f}")
        return Item(description, weight, unit, to_cents(weight * unit), by_weight=True)
    quantity = Decimal(rng.choices((1, 2, 3, 4, 6), weights=(70, 15, 7, 5, 3))[0])
    return Item(description, quantity, unit, quantity * unit, by_weight=False)


def _items(rng: random.Random, category: Category, count: int, max_description: int) -> list[Item]:
    products = rng.sample(category.products, min(count, len(category.products)))
    return [_item(rng, product, max_description) for product in products]


def _moment(rng: random.Random) -> datetime:
    day = date(2019, 1, 1) + timedelta(days=rng.randint(0, 6 * 365))
    minutes = rng.randint(7 * 60, 22 * 60 + 30)
    return datetime.combine(day, time(minutes // 60, minutes % 60))


def _us_location(rng: random.Random) -> tuple[list[str], str]:
    state = rng.choice(JURISDICTIONS)
    city, zip_code = rng.choice(state.cities)
    return [street_address(rng).title(), f"{city.title()}, {state.code} {zip_code}"], phone_number(rng)


def _malaysian_location(rng: random.Random) -> tuple[list[str], str]:
    street, city, postcode = rng.choice(MALAYSIA_CITIES)
    unit = f"NO. {rng.randint(1, 120)}, {street}"
    return [unit, f"{postcode} {city}"], f"03-{rng.randint(2000, 9999)} {rng.randint(1000, 9999)}"


def _payment(rng: random.Random, currency: str) -> tuple[str, str]:
    method = rng.choices(
        ("credit_card", "debit_card", "cash", "mobile", "gift_card", "other"), weights=(40, 20, 22, 10, 5, 3)
    )[0]
    last4 = f"{rng.randint(0, 9999):04d}"
    labels = {
        "credit_card": f"{rng.choice(('VISA', 'MASTERCARD', 'AMEX', 'DISCOVER'))} ************{last4}",
        "debit_card": f"DEBIT CARD ****{last4}",
        "cash": "CASH",
        "mobile": rng.choice(("APPLE PAY", "GOOGLE PAY")) if currency == "USD" else "E-WALLET",
        "gift_card": f"GIFT CARD ****{last4}",
        "other": "STORE CREDIT",
    }
    return method, labels[method]


def _receipt_number(rng: random.Random) -> tuple[str, str]:
    style = rng.randrange(4)
    if style == 0:
        return "Receipt #:", f"{rng.randint(1, 999999):06d}"
    if style == 1:
        return "TRANS", f"{rng.randint(1000, 9999)}"
    if style == 2:
        return "Order #", f"{rng.randint(1, 999)}"
    return "INV NO:", f"CS{rng.randint(0, 99999999):08d}"


def random_sale(rng: random.Random, *, item_count: int | None = None) -> Sale:
    """A consistent sale; `item_count` defaults to a short (3), medium or long (30) receipt."""
    currency = "MYR" if rng.random() < 0.12 else "USD"
    if item_count is None:
        item_count = rng.choices((SHORT_ITEMS, rng.randint(5, 12), LONG_ITEMS), weights=(45, 25, 30))[0]
    category = rng.choice([c for c in CATEGORIES if item_count <= len(c.products)])
    layout = rng.choice(("at", "columns"))
    # on the narrowest (40-column) roll the table leaves 17 characters for the description
    items = _items(rng, category, item_count, 17 if layout == "columns" else 26)
    address_lines, phone = (_malaysian_location if currency == "MYR" else _us_location)(rng)
    tax_label, tax_rate = (
        ("SST", Decimal("6")) if currency == "MYR" else ("TAX", Decimal(rng.choice(_US_TAX_RATES)))
    )
    method, label = _payment(rng, currency)
    receipt_label, receipt_number = _receipt_number(rng)
    sale = Sale(
        merchant=rng.choice(category.merchants) + (" SDN BHD" if currency == "MYR" else ""),
        address_lines=address_lines,
        phone=phone,
        currency=currency,
        items=items,
        tax_label=tax_label,
        tax_rate=tax_rate,
        tip=None,
        payment_method=method,
        payment_label=label,
        moment=_moment(rng),
        receipt_number=receipt_number,
        receipt_label=receipt_label,
        cashier=rng.choice(_CASHIERS),
        layout=layout,
        date_style=rng.choice(("us", "iso", "short", "text")),
    )
    if category.tips and rng.random() < 0.6:
        sale.tip = to_cents(sale.subtotal * Decimal(rng.choice(("0.15", "0.18", "0.20", "0.22"))))
    if method == "cash":
        sale.tendered = _cash_tendered(rng, sale.total)
    return sale


def _cash_tendered(rng: random.Random, total: Decimal) -> Decimal:
    step = Decimal(rng.choice((1, 5, 10, 20)))
    return (total / step).to_integral_value(rounding=ROUND_CEILING) * step


def _date_parts(sale: Sale) -> tuple[str, str, str]:
    """(date, separator, clock) as printed."""
    moment = sale.moment
    clock = moment.strftime("%H:%M") if sale.currency == "MYR" else moment.strftime("%I:%M %p").lstrip("0")
    if sale.date_style == "iso":
        return moment.date().isoformat(), " ", moment.strftime("%H:%M")
    if sale.date_style == "short":
        return moment.strftime("%m/%d/%y"), "  ", clock
    if sale.date_style == "text":
        return moment.strftime("%b %d, %Y"), "  ", clock
    return moment.strftime("%m/%d/%Y"), "  ", clock


def _date_line(sale: Sale) -> PrintLine:
    day, gap, clock = _date_parts(sale)
    text = f"{day}{gap}{clock}"
    return PrintLine(text, marks=(("/transaction_date", 0, len(day)), tail("/transaction_time", text, clock)))


def _labelled(label: str, pointer: str, value: str) -> PrintLine:
    text = f"{label} {value}"
    return PrintLine(text, marks=(tail(pointer, text, value),))


def _pair(left: str, right: str, width: int) -> str:
    gap = max(1, width - len(left) - len(right))
    return f"{left}{' ' * gap}{right}"


def _item_lines(sale: Sale, width: int) -> list[PrintLine]:
    if sale.layout == "columns":
        lines = [PrintLine(_pair("QTY  ITEM", "PRICE   AMOUNT", width), weight="bold")]
        for n, item in enumerate(sale.items):
            at = f"/items/{n}/"
            qty = f"{item.quantity}".ljust(5)
            unit, total = money(item.unit_price), money(item.total)
            text = _pair(f"{qty}{item.description}", f"{unit:>8} {total:>8}", width)
            marks = (
                (at + "quantity", 0, len(f"{item.quantity}")),
                (at + "description", 5, 5 + len(item.description)),
                (at + "unit_price", len(text) - 9 - len(unit), len(text) - 9),
                tail(at + "total_price", text, total),
            )
            lines.append(PrintLine(text, marks=marks))
        return lines
    lines = []
    for n, item in enumerate(sale.items):
        at = f"/items/{n}/"
        total = money(item.total)
        text = _pair(item.description, total, width)
        marks = ((at + "description", 0, len(item.description)), tail(at + "total_price", text, total))
        lines.append(PrintLine(text, marks=marks))
        if item.by_weight or item.quantity != 1:
            quantity, unit = f"{item.quantity}", money(item.unit_price)
            text = f"  {quantity} lb @ {unit} /lb" if item.by_weight else f"  {quantity} @ {unit}"
            start = text.index(unit)
            marks = ((at + "quantity", 2, 2 + len(quantity)), (at + "unit_price", start, start + len(unit)))
            lines.append(PrintLine(text, marks=marks))
    return lines


def _amount_line(label: str, pointer: str, amount: str, width: int) -> PrintLine:
    text = _pair(label, amount, width)
    return PrintLine(text, marks=(tail(pointer, text, amount),))


def _total_lines(sale: Sale, width: int) -> list[PrintLine]:
    symbol = "RM" if sale.currency == "MYR" else "$"
    rate = f"{sale.tax_rate.normalize():f}%"
    lines = [
        _amount_line("SUBTOTAL", "/subtotal", money(sale.subtotal), width),
        _amount_line(f"{sale.tax_label} {rate}", "/tax", money(sale.tax), width),
    ]
    if sale.tip is not None:
        lines.append(_amount_line("TIP", "/tip", money(sale.tip), width))
    total = money(sale.total)
    text = _pair("TOTAL", f"{symbol}{total}", width)
    lines.append(PrintLine(text, weight="bold", marks=(tail("/total", text, total),)))
    lines.append(PrintLine(""))
    if sale.tendered is not None:
        lines.append(PrintLine(_pair("CASH", money(sale.tendered), width)))
        lines.append(PrintLine(_pair("CHANGE", money(sale.tendered - sale.total), width)))
    else:
        lines.append(PrintLine(_pair(sale.payment_label, money(sale.total), width)))
    return lines


def print_lines(sale: Sale, width: int) -> list[PrintLine]:
    """The receipt as a thermal printer would lay it out on a `width`-column roll."""
    rule = "-" * width
    lines = [
        PrintLine(sale.merchant, align="center", weight="big", marks=whole("/merchant_name", sale.merchant))
    ]
    lines += [
        PrintLine(text, align="center", marks=whole("/merchant_address", text)) for text in sale.address_lines
    ]
    phone = f"Tel: {sale.phone}"
    lines += [
        PrintLine(phone, align="center", marks=(tail("/merchant_phone", phone, sale.phone),)),
        PrintLine(rule),
    ]
    lines += [_date_line(sale), _labelled(sale.receipt_label, "/receipt_number", sale.receipt_number)]
    lines += [PrintLine(f"Cashier: {sale.cashier}"), PrintLine(rule)]
    lines += _item_lines(sale, width)
    lines += [PrintLine(rule)]
    lines += _total_lines(sale, width)
    lines += [PrintLine(rule), PrintLine(f"ITEMS SOLD: {len(sale.items)}", align="center")]
    lines += [PrintLine("THANK YOU FOR YOUR VISIT!", align="center"), PrintLine("")]
    return lines


def generate_receipt(
    rng: random.Random, *, item_count: int | None = None, capture: str | None = None
) -> SyntheticDocument:
    """A receipt image (one page) and its ground truth; `capture` "scan" or "photo" (default: either)."""
    sale = random_sale(rng, item_count=item_count)
    width = rng.randint(40, 46)
    capture = capture or rng.choice(CAPTURES)
    image, boxes = render_receipt(print_lines(sale, width), width, sale.receipt_number, rng, capture)
    return SyntheticDocument("receipt", sale.ground_truth(), [image], page_boxes(boxes, page=1))
