"""Receipt-like text lines from a seeded RNG: items, prices, dates, totals, codes, store lines.

Also what receipts print and item lines rarely make: dot leaders and rules, masked card
numbers, long digit strings, runs of one character (`xxxx1234`, `llll`, `....`; CTC needs a
blank frame between two equal characters, so runs are what a model with too few frames per
glyph drops), e-mail and web addresses, file paths, currency and unit forms. A share of lines
is random printable ASCII so every character of the charset is trained on, even the ones
receipts rarely print (`{`, `~`, `^`).
"""

from __future__ import annotations

import random
import string
from collections.abc import Callable

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


def _leader(rng: random.Random) -> str:
    name = " ".join(_case(rng, rng.choice(_ITEMS)) for _ in range(rng.randint(1, 2)))
    fill = rng.choice("...--__ ") * rng.randint(2, 16)
    return f"{name} {fill} {rng.choice(_CURRENCY)}{_price(rng)}"


def _rule(rng: random.Random) -> str:
    ch = rng.choice("==--__*.~#+")
    if rng.random() < 0.3:
        word = _case(rng, rng.choice(_LABELS))
        side = ch * rng.randint(2, 12)
        return f"{side} {word} {side}"
    if rng.random() < 0.2:
        return (ch + " ") * rng.randint(4, 16)
    return ch * rng.randint(4, 40)


def _masked(rng: random.Random) -> str:
    last, mask = f"{rng.randint(0, 9999):04d}", rng.choice("xX*#")
    forms = (
        f"{mask * rng.randint(4, 12)}{last}",
        f"{mask * 4} {mask * 4} {mask * 4} {last}",
        f"{rng.choice(_LABELS)} {mask * 4}-{mask * 4}-{last}",
        f"Card No: {mask * rng.randint(6, 12)}{last}",
        f"ACCT {mask * rng.randint(2, 8)}{last[-3:]}",
    )
    return rng.choice(forms)


def _digits(rng: random.Random) -> str:
    digits = "".join(rng.choice(string.digits) for _ in range(rng.randint(8, 24)))
    if rng.random() < 0.4:  # runs of one digit
        at = rng.randint(0, len(digits))
        digits = digits[:at] + rng.choice(string.digits) * rng.randint(3, 10) + digits[at:]
    if rng.random() < 0.3:
        digits = " ".join(digits[i : i + 4] for i in range(0, len(digits), 4))
    return rng.choice(("", "", "UPC ", "Batch ", "S/N ", "TXN# ", "Ref ")) + digits


def _run(rng: random.Random) -> str:
    ch = rng.choice("lI1i.:;,'|-=_oO0mnrwvxXW!")
    run = ch * rng.randint(2, 14)
    word = _case(rng, rng.choice(_ITEMS))
    return rng.choice((run, f"{word} {run}", f"{run} {word}", f"{word}{run}{rng.randint(0, 99)}"))


def _address(rng: random.Random) -> str:
    a, b = rng.choice(_ITEMS), rng.choice(_ITEMS)
    tld = rng.choice(("com", "net", "org", "co.uk", "de", "fr", "io", "app", "example"))
    user = rng.choice((a, f"{a}.{b}", f"{a}_{b}", f"{a}{rng.randint(1, 99)}"))
    path = "/".join(rng.choice(_ITEMS) for _ in range(rng.randint(0, 2)))
    query = f"?q={rng.getrandbits(20):05x}&n={rng.randint(1, 9)}" if rng.random() < 0.3 else ""
    forms = (
        f"{user}@{b}-{a}.{tld}",
        f"Mail: {user}@{b}.{tld}",
        f"{rng.choice(('https://', 'http://', ''))}{rng.choice(('www.', ''))}{a}{b}.{tld}/{path}",
        f"{a}.{tld}/{path}{query}",
    )
    return rng.choice(forms)


def _path(rng: random.Random) -> str:
    parts = [rng.choice(_ITEMS) for _ in range(rng.randint(1, 3))]
    name = f"{rng.choice(('receipt', 'rcpt', 'z', 'eod'))}{rng.randint(0, 9999):04d}"
    ext = rng.choice((".txt", ".pdf", ".csv", ".json", ".log"))
    if rng.random() < 0.5:
        return f"/{'/'.join(parts)}/{name}{ext}"
    return "\\".join([f"{rng.choice('CDE')}:", *(p.upper() for p in parts), name + ext])


def _money(rng: random.Random) -> str:
    cur = rng.choice(("$", "USD", "EUR", "GBP", "CAD", "AUD", "JPY", "CHF", "SEK"))
    amount = _price(rng, 2000)
    if rng.random() < 0.3:
        amount = f"{float(amount.replace(',', '.')) * 1000:,.2f}"
    forms = (
        f"{cur} {amount}",
        f"{amount} {cur}",
        f"-{cur}{amount}",
        f"({amount})",
        f"{rng.randint(1, 20)} x {rng.choice(('500ml', '1.5L', '2 L', '12 oz', '250g', '1lb'))}",
        f"{rng.uniform(0.1, 50):.2f} gal @ {rng.uniform(1, 6):.3f}/gal",
        f"{rng.randint(1, 99)}% off {cur} {_price(rng)}",
    )
    return rng.choice(forms)


_Kind = tuple[Callable[[random.Random], str], float]
_BASIC: tuple[_Kind, ...] = (
    (_item, 0.40),
    (_date, 0.1),
    (_total, 0.16),
    (_code, 0.17),
    (_store, 0.06),
    (_footer, 0.05),
    (_random_ascii, 0.06),
)
_RECEIPTS: tuple[_Kind, ...] = (
    (_item, 0.27),
    (_date, 0.07),
    (_total, 0.11),
    (_code, 0.11),
    (_store, 0.04),
    (_footer, 0.04),
    (_random_ascii, 0.05),
    (_leader, 0.07),
    (_rule, 0.05),
    (_masked, 0.04),
    (_digits, 0.04),
    (_run, 0.04),
    (_address, 0.04),
    (_path, 0.02),
    (_money, 0.03),
)
# Kinds of lines and how often each is drawn. `receipts` (training, and every split unless
# told otherwise): all of them. `basic`: item, date, total, code, store and footer lines and
# random ASCII, without leaders, rules, runs, masked numbers, long digit strings, addresses,
# paths or money forms; `bench/train_accuracy.py` scores on it beside `receipts`, so its
# figures stay comparable with those read on these kinds alone.
TEXT_MIXES: dict[str, tuple[_Kind, ...]] = {"receipts": _RECEIPTS, "basic": _BASIC}


def label_of(line: str) -> str:
    """The label of a rendered line: each run of spaces is one space.

    Receipts pad columns with runs of spaces; how many were typed cannot be read from the
    gap in a proportional font the model has never seen (its space width is unknown), so
    the gap's width is layout, not text, as in common OCR ground truth.
    """
    return " ".join(line.split())


def receipt_line(rng: random.Random, max_chars: int = 40, mix: str = "receipts") -> str:
    """One receipt-like line of printable ASCII, at most `max_chars` long, never blank, of
    one of the kinds of `TEXT_MIXES[mix]`."""
    funcs, weights = zip(*TEXT_MIXES[mix], strict=True)
    while True:
        line = str(rng.choices(funcs, weights)[0](rng))[:max_chars].strip()
        if line:
            return line
