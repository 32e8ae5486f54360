"""Receipt-like text lines from a seeded RNG: items, prices, dates, totals, codes, store lines.

A share of lines is random printable ASCII so every character of the charset is trained on,
even the ones receipts rarely print (`{`, `~`, `^`).
"""

from __future__ import annotations

import random
import string

from ocrtrain.train.data.charset import PRINTABLE_ASCII


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


_ITEMS = _words(
    "milk bread butter eggs cheese yogurt apples bananas oranges grapes lemon lime tomatoes "
    "potatoes onions garlic carrots lettuce spinach broccoli pepper cucumber avocado rice pasta "
    "flour sugar salt coffee tea juice water soda beer wine chicken beef pork ham bacon salmon "
    "tuna shrimp sausage cereal oats honey jam peanut chocolate cookies chips crackers nuts "
    "olive oil vinegar ketchup mustard mayo soup beans corn peas frozen pizza ice cream "
    "detergent soap shampoo toothpaste tissue paper towels batteries bulb candles napkins foil "
    "organic large small family pack whole wheat low fat diet fresh sliced grated smoked"
)
_STORES = (
    "FRESHMART",
    "Corner Shop",
    "QuickStop #1042",
    "GREEN GROCER",
    "Mega Market",
    "City Deli",
    "Bio-Laden GmbH",
    "O'Brien's Pub",
    "Cafe du Coin",
    "HARDWARE & CO.",
    "Pharma+ Store",
)
_LABELS = (
    "TOTAL",
    "SUBTOTAL",
    "Sub-total",
    "TAX",
    "VAT",
    "CASH",
    "CHANGE",
    "CHANGE DUE",
    "Balance",
    "DISCOUNT",
    "Savings",
    "VISA",
    "MASTERCARD",
    "Debit",
    "TIP",
    "Amount",
    "Net",
    "Tendered",
)
_FOOTERS = (
    "Thank you for shopping!",
    "THANK YOU - PLEASE COME AGAIN",
    "No refunds without receipt.",
    "Returns within 30 days",
    "*** CUSTOMER COPY ***",
    "Have a nice day :)",
    "Keep this receipt",
    "Points earned: {n}",
    "Ask about our loyalty card!",
    "Items sold: {n}",
)
_MONTHS = _words("Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec")
_CURRENCY = ("$", "", "", "EUR ", "", "USD ", "")


def _case(rng: random.Random, word: str) -> str:
    r = rng.random()
    if r < 0.45:
        return word.upper()
    if r < 0.8:
        return word.capitalize()
    return word


def _price(rng: random.Random, hi: float = 99.0) -> str:
    value = rng.choice((rng.uniform(0.1, 9.99), rng.uniform(0.1, hi), rng.uniform(1, 999)))
    sep = "," if rng.random() < 0.1 else "."
    return f"{value:.2f}".replace(".", sep)


def _item(rng: random.Random) -> str:
    name = " ".join(_case(rng, rng.choice(_ITEMS)) for _ in range(rng.randint(1, 3)))
    cur = rng.choice(_CURRENCY)
    r = rng.random()
    if r < 0.3:
        return f"{name} {cur}{_price(rng)}"
    if r < 0.5:
        qty = rng.randint(1, 12)
        unit = _price(rng, 20)
        return f"{qty} x {name} @ {unit}"
    if r < 0.65:
        return f"{name}{' ' * rng.randint(2, 6)}{_price(rng)} {rng.choice('ABTN*')}"
    if r < 0.8:
        kg = rng.uniform(0.05, 3)
        return f"{name} {kg:.3f} kg x {_price(rng, 30)}/kg"
    sku = rng.randint(10000, 99999999)
    return f"{sku} {name} {_price(rng)}"


def _date(rng: random.Random) -> str:
    y, m, d = rng.randint(2015, 2030), rng.randint(1, 12), rng.randint(1, 28)
    hh, mm, ss = rng.randint(0, 23), rng.randint(0, 59), rng.randint(0, 59)
    forms = (
        f"{m:02d}/{d:02d}/{y} {hh:02d}:{mm:02d}",
        f"{y}-{m:02d}-{d:02d} {hh:02d}:{mm:02d}:{ss:02d}",
        f"{d:02d}.{m:02d}.{y % 100:02d} {hh:02d}:{mm:02d}",
        f"{d} {_MONTHS[m - 1]} {y}  {hh % 12 or 12}:{mm:02d} {'AM' if hh < 12 else 'PM'}",
        f"Date: {d:02d}/{m:02d}/{y}  Time: {hh:02d}:{mm:02d}",
    )
    return rng.choice(forms)


def _total(rng: random.Random) -> str:
    label = rng.choice(_LABELS)
    cur = rng.choice(_CURRENCY)
    if label in ("TAX", "VAT") and rng.random() < 0.5:
        return f"{label} {rng.choice((5, 7, 8.25, 19, 20, 21))}% {cur}{_price(rng, 30)}"
    return f"{label}{' ' * rng.randint(1, 8)}{cur}{_price(rng, 500)}"


def _code(rng: random.Random) -> str:
    alnum = string.ascii_uppercase + string.digits
    token = "".join(rng.choice(alnum) for _ in range(rng.randint(4, 10)))
    forms = (
        f"REF#{token}",
        f"TRN {rng.randint(0, 10**9):09d}",
        f"CARD ****{rng.randint(0, 9999):04d}",
        f"AUTH: {token[:6]}",
        f"Order No. {rng.randint(1, 99999)}",
        f"Terminal {rng.randint(1, 99):02d}/{token[:3]}",
        f"Cashier: {_case(rng, rng.choice(('anna', 'bob', 'li', 'omar', 'jose')))} [{token[:2]}]",
        f"Tel: ({rng.randint(200, 999)}) {rng.randint(200, 999)}-{rng.randint(0, 9999):04d}",
        f"www.{rng.choice(_ITEMS)}-shop.com",
        f"info@{rng.choice(_ITEMS)}.example",
    )
    return rng.choice(forms)


def _store(rng: random.Random) -> str:
    store = rng.choice(_STORES)
    if rng.random() < 0.5:
        return store
    return f"{store}, {rng.randint(1, 999)} {_case(rng, rng.choice(_ITEMS))} St."


def _footer(rng: random.Random) -> str:
    return rng.choice(_FOOTERS).format(n=rng.randint(1, 500))


def _random_ascii(rng: random.Random) -> str:
    chars = PRINTABLE_ASCII[1:]  # no leading/trailing space trouble: spaces are added as gaps
    words = ["".join(rng.choice(chars) for _ in range(rng.randint(1, 8))) for _ in range(4)]
    return " ".join(words[: rng.randint(1, 4)])


_KINDS = (
    (_item, 0.40),
    (_date, 0.1),
    (_total, 0.16),
    (_code, 0.17),
    (_store, 0.06),
    (_footer, 0.05),
    (_random_ascii, 0.06),
)


def label_of(line: str) -> str:
    """The label of a rendered line: each run of spaces is one space.

    Receipts pad columns with runs of spaces; how many were typed cannot be read from the
    gap in a proportional font the model has never seen (its space width is unknown), so
    the gap's width is layout, not text, as in common OCR ground truth.
    """
    return " ".join(line.split())


def receipt_line(rng: random.Random, max_chars: int = 40) -> str:
    """One receipt-like line of printable ASCII, at most `max_chars` long, never blank."""
    funcs, weights = zip(*_KINDS, strict=True)
    while True:
        line = rng.choices(funcs, weights)[0](rng)
        line = line[:max_chars].strip()
        if line:
            return line
