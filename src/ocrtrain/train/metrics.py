"""Character error rate and line accuracy, summed over batches then divided."""

from __future__ import annotations

from collections.abc import Iterable


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (insert, delete, substitute all cost 1)."""
    if len(a) < len(b):
        a, b = b, a
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


class TextScore:
    """Accumulates edits, reference characters and exact lines."""

    def __init__(self, edits: int = 0, chars: int = 0, correct: int = 0, lines: int = 0) -> None:
        self.edits = edits
        self.chars = chars
        self.correct = correct
        self.lines = lines

    def counts(self) -> list[int]:
        """(edits, chars, correct, lines): what adds up across shards; `TextScore(*counts)`."""
        return [self.edits, self.chars, self.correct, self.lines]

    def update(self, predictions: Iterable[str], references: Iterable[str]) -> None:
        for p, r in zip(predictions, references, strict=True):
            self.edits += edit_distance(p, r)
            self.chars += len(r)
            self.lines += 1
            self.correct += p == r

    @property
    def cer(self) -> float:
        return self.edits / max(self.chars, 1)

    @property
    def line_acc(self) -> float:
        return self.correct / max(self.lines, 1)
