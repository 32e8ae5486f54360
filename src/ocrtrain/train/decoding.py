"""Greedy CTC decoding, with runs of joined strokes (`____`, and `====` or `----` where a
font joins them) counted by their length.

A run of underscores is one unbroken stroke in most fonts, and so are runs of `=` or `-` in
fonts whose ligatures join them: nothing in the image marks where one glyph ends and the next
begins. The model places its emissions from glyph edges, so for a leader of twelve it emits
two or three, and between them its probability of the character stays raised, below the
blank's. Such a run is recounted as its extent (the frames where the character stays likely)
over the line's own glyph advance, measured between neighbouring digits, as in the price that
ends a leader (`Ham & Cheese ________ 3.59`); digits and these characters have about the same
advance in the fonts that join them. On a line without two neighbouring digits (a rule alone)
the advance is the one typical of the line's height instead. A run whose emissions are
already about one advance apart (separate glyphs) keeps its count.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

import torch

from ocrtrain.train.data.charset import Charset

JOINED = "_=-"
# A frame stays inside a run while its column's probability of the character is at least this, or
# while it lies in a dip of at most BRIDGED columns between two such columns (after an
# emission the model is sure of a blank for a column or two).
LIKELY = 0.05
BRIDGED = 2
# A run is recounted when two of its emissions (or an emission and the run's end) are more
# than this many advances apart: the model skipped glyphs there.
SKIPPED = 1.5
# A joined character's advance over the height of its line image, where no digits measure
# it: the underscore's median in the training fonts as the renderer draws them (their middle
# 80%: 0.26-0.46).
ADVANCE_PER_HEIGHT = 0.37
_DIGITS = "0123456789"


@dataclass(frozen=True)
class Emission:
    """One character of a greedy CTC path: its label and its first and last frame."""

    label: int
    first: int
    last: int

    @property
    def center(self) -> float:
        return (self.first + self.last) / 2


def emissions(best: Sequence[int], blank: int = Charset.blank) -> list[Emission]:
    """The characters of a greedy path (repeats collapsed, blanks dropped) with their frames."""
    out: list[Emission] = []
    prev = blank
    for t, label in enumerate(best):
        if label != blank and label == prev:
            out[-1] = Emission(label, out[-1].first, t)
        elif label != blank:
            out.append(Emission(label, t, t))
        prev = label
    return out


def digit_advance(found: Sequence[Emission], charset: Charset) -> float | None:
    """Frames from one digit to the next, the median over the line's neighbouring digits."""
    digits = {i + 1 for i, c in enumerate(charset.chars) if c in _DIGITS}  # ids start at 1
    steps = [
        b.center - a.center for a, b in pairwise(found) if a.label in digits and b.label in digits
    ]
    return statistics.median(steps) if steps else None


def decode_batch(
    logits: torch.Tensor,
    lengths: Sequence[int],
    charset: Charset,
    frames_per_column: int = 1,
    line_frames: float | None = None,
) -> list[str]:
    """The texts of (T, B, C) logits, line b cut at its `lengths[b]` frames (whole columns of
    `frames_per_column` frames, as `CRNN.output_lengths` gives them). `line_frames`: how many
    frames one line height spans; without it, runs on lines without digits keep their count."""
    logits = logits.detach()
    best = logits.argmax(-1).t().cpu()
    joined = frozenset(charset.encode("".join(c for c in JOINED if c in charset.chars)))
    texts = []
    for b, n in enumerate(lengths):
        path: list[int] = best[b, :n].tolist()
        if joined.isdisjoint(path):
            texts.append(charset.ctc_greedy(path))
        else:
            texts.append(
                _recounted(path, logits[:n, b], charset, joined, frames_per_column, line_frames)
            )
    return texts


def _recounted(
    best: list[int],
    logits: torch.Tensor,
    charset: Charset,
    joined: frozenset[int],
    frames_per_column: int,
    line_frames: float | None,
) -> str:
    """The text of greedy path `best`, its runs of `joined` characters recounted (see the
    module)."""
    found = emissions(best, charset.blank)
    advance = digit_advance(found, charset)
    if not advance and line_frames:
        advance = ADVANCE_PER_HEIGHT * line_frames
    if not advance:
        return charset.decode([e.label for e in found])
    probs = logits.float().softmax(-1).cpu()
    likely: dict[int, list[bool]] = {}
    out: list[int] = []
    i = 0
    while i < len(found):
        label = found[i].label
        if label not in joined:
            out.append(label)
            i += 1
            continue
        if label not in likely:
            likely[label] = _likely(probs[:, label], frames_per_column)
        inside = likely[label]
        start = found[i].first
        while start > 0 and best[start - 1] == charset.blank and inside[start - 1]:
            start -= 1
        j, end = i, found[i].last
        for t in range(found[i].last + 1, len(best)):
            if best[t] not in (charset.blank, label) or not inside[t]:
                break
            if j + 1 < len(found) and found[j + 1].first == t:
                j += 1
            end = t
        run = found[i : j + 1]
        gaps = [b.center - a.center for a, b in pairwise(run)]
        gaps += [run[0].first - start, end - run[-1].last]
        count = len(run)
        if max(gaps) > SKIPPED * advance:
            count = max(count, round((end - start + 1) / advance))
        out.extend([label] * count)
        i = j + 1
    return charset.decode(out)


def _likely(p: torch.Tensor, frames_per_column: int) -> list[bool]:
    """Per frame: whether its column's best frame gives the character at least `LIKELY`,
    dips of up to `BRIDGED` columns bridged."""
    k = frames_per_column
    column = _bridged((p.reshape(-1, k).amax(1) >= LIKELY).tolist())
    return [c for c in column for _ in range(k)]


def _bridged(column: list[bool]) -> list[bool]:
    """`column` with each dip of at most `BRIDGED` False columns between two True ones filled."""
    out = list(column)
    last = None  # the last True column seen
    for i, likely in enumerate(column):
        if likely:
            if last is not None and 1 < i - last <= BRIDGED + 1:
                out[last + 1 : i] = [True] * (i - last - 1)
            last = i
    return out


__all__ = ["Emission", "decode_batch", "digit_advance", "emissions"]
