"""Map text to CTC label ids and back; id 0 is the CTC blank, so characters start at 1."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

PRINTABLE_ASCII = "".join(chr(c) for c in range(32, 127))


class Charset:
    """An ordered set of characters the recognizer can emit."""

    blank = 0

    def __init__(self, chars: str | None = None) -> None:
        chars = PRINTABLE_ASCII if chars in (None, "", "printable_ascii") else chars
        assert chars is not None
        if len(set(chars)) != len(chars):
            raise ValueError("charset has duplicate characters")
        self.chars = chars
        self._index = {c: i + 1 for i, c in enumerate(chars)}

    def __len__(self) -> int:
        return len(self.chars)

    @property
    def num_classes(self) -> int:
        """Characters plus the blank."""
        return len(self.chars) + 1

    def unknown(self, text: str) -> str:
        """The characters of `text` outside the charset, in order of first appearance."""
        return "".join(dict.fromkeys(c for c in text if c not in self._index))

    def encode(self, text: str) -> list[int]:
        """Label ids of `text`; raises ValueError naming characters outside the charset."""
        bad = self.unknown(text)
        if bad:
            raise ValueError(f"characters outside the charset: {bad!r}")
        return [self._index[c] for c in text]

    def decode(self, ids: Iterable[int]) -> str:
        """Text of label ids (blanks skipped, no CTC collapsing)."""
        return "".join(self.chars[i - 1] for i in ids if 0 < i <= len(self.chars))

    def ctc_greedy(self, best_path: Sequence[int]) -> str:
        """Collapse repeats, drop blanks: the text of a greedy CTC path."""
        out: list[int] = []
        prev = self.blank
        for i in best_path:
            if i not in (prev, self.blank):
                out.append(i)
            prev = i
        return self.decode(out)


__all__ = ["PRINTABLE_ASCII", "Charset"]
