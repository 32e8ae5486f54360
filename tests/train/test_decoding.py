"""Greedy CTC decoding: emissions with their frames, and joined underscore runs recounted."""

from __future__ import annotations

import torch

from ocrtrain.train.data.charset import Charset
from ocrtrain.train.decoding import ADVANCE_PER_HEIGHT, Emission, decode_batch, emissions

CS = Charset()
ADVANCE = 8  # frames from one glyph to the next in the lines below


def _line(parts: list[tuple[str, int]], raised: float = 0.2) -> torch.Tensor:
    """(T, C) logits of a line: each part is (characters, frames); a part of one `_`, `=` or
    `-` is one joined stroke, emitted at its first and last frame only, the character at `raised`
    probability between."""
    frames = sum(n for _, n in parts)
    logits = torch.zeros(frames, CS.num_classes)
    logits[:, CS.blank] = 5.0
    t = 0
    for text, n in parts:
        if text in ("_", "=", "-"):
            us = CS.encode(text[0])[0]
            logits[t : t + n, us] = 5.0 + float(torch.logit(torch.tensor(raised)))
            logits[t, us] = logits[t + n - 1, us] = 9.0
        else:
            per = n // len(text)
            for i, label in enumerate(CS.encode(text)):
                logits[t + i * per + per // 2, label] = 9.0
        t += n
    return logits


def decode_line(
    logits: torch.Tensor,
    cs: Charset = CS,
    frames_per_column: int = 2,
    line_frames: float | None = None,
) -> str:
    return decode_batch(logits[:, None], [len(logits)], cs, frames_per_column, line_frames)[0]


def test_emissions_keep_each_characters_frames() -> None:
    assert emissions([0, 5, 5, 0, 5, 7, 0]) == [
        Emission(5, 1, 2),
        Emission(5, 4, 4),
        Emission(7, 5, 5),
    ]


def test_a_joined_run_is_counted_by_its_length_over_the_digits_advance() -> None:
    line = _line([("Milk", 4 * ADVANCE), ("_", 12 * ADVANCE), ("3.59", 4 * ADVANCE)])
    assert CS.ctc_greedy(line.argmax(-1).tolist()) == "Milk__3.59"  # what the model emits
    assert decode_line(line) == "Milk" + "_" * 12 + "3.59"
    us, last = CS.encode("_")[0], 4 * ADVANCE + 12 * ADVANCE - 1
    line[last, us] = line[last - 1, us]  # one emission only, at the run's start
    dip = 4 * ADVANCE + 5 * ADVANCE
    line[dip : dip + 4, us] = -5.0  # and two columns where `_` fades: still one run
    assert decode_line(line) == "Milk" + "_" * 12 + "3.59"
    line[dip + 4 : dip + 6, us] = -5.0  # three columns of paper end it: five before them
    assert decode_line(line) == "Milk" + "_" * 5 + "3.59"


def test_runs_already_spaced_and_lines_without_digits_keep_their_count() -> None:
    # six emissions, one advance apart
    spaced = _line([("Milk", 4 * ADVANCE), ("_" * 6, 6 * ADVANCE), ("3.59", 4 * ADVANCE)])
    assert decode_line(spaced) == "Milk______3.59"

    no_digits = _line([("Milk", 4 * ADVANCE), ("_", 12 * ADVANCE), ("ok", 2 * ADVANCE)])
    assert decode_line(no_digits) == "Milk__ok"


def test_a_rule_without_digits_is_counted_by_the_advance_its_line_height_suggests() -> None:
    rule = _line([("_", 20 * ADVANCE)])
    assert decode_line(rule) == "__"
    assert decode_line(rule, line_frames=ADVANCE / ADVANCE_PER_HEIGHT) == "_" * 20


def test_ligature_joined_rules_are_counted_and_separate_glyphs_kept() -> None:
    joined = _line([("=", 10 * ADVANCE), ("COPY", 4 * ADVANCE), ("-", 6 * ADVANCE), ("10", 16)])
    assert decode_line(joined) == "=" * 10 + "COPY" + "-" * 6 + "10"
    separate = _line([("=" * 10, 10 * ADVANCE), ("10", 2 * ADVANCE)])  # one emission a glyph
    assert decode_line(separate) == "=" * 10 + "10"


def test_a_run_stops_where_its_probability_falls() -> None:
    """Two rules on one line, paper between them: each is counted on its own extent."""
    line = _line(
        [("_", 4 * ADVANCE), ("TOTAL", 5 * ADVANCE), ("_", 4 * ADVANCE), ("10", 2 * ADVANCE)]
    )
    assert decode_line(line) == "____TOTAL____10"


def test_a_charset_without_underscores_decodes_greedily() -> None:
    cs = Charset("0123456789ab")
    logits = torch.zeros(6, cs.num_classes)
    logits[:, 0] = 5.0
    logits[1, cs.encode("a")[0]] = logits[4, cs.encode("1")[0]] = 9.0
    assert decode_line(logits, cs) == "a1"


def test_a_batch_reads_each_line_to_its_own_length() -> None:
    long = _line([("Milk", 4 * ADVANCE), ("_", 12 * ADVANCE), ("3.59", 4 * ADVANCE)])
    short = _line([("ok", 2 * ADVANCE)])
    logits = torch.zeros(len(long), 2, CS.num_classes)
    logits[:, 0] = long
    logits[:, 1, CS.encode("x")[0]] = 9.0  # the padding: never read
    logits[: len(short), 1] = short
    texts = decode_batch(logits, [len(long), len(short)], CS, frames_per_column=2)
    assert texts == ["Milk" + "_" * 12 + "3.59", "ok"]
