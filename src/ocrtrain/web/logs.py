"""Live log streaming: tail a run's output log by byte offset and serve it as Server-Sent Events.

Offsets make the stream resumable (`Last-Event-ID` / `?offset=`) and keep the server's memory
flat: each event carries at most one bounded chunk, read from the file, never buffered.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

CHUNK_BYTES = 64 * 1024
# CSI sequences (colours, cursor moves), OSC titles/links, and lone two-byte escapes.
_ANSI_RE = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")


def clean_line(raw: bytes) -> str:
    """A log line as shown: UTF-8 (lossy), no ANSI codes, and a progress bar redrawn with
    carriage returns reduced to its last state."""
    text = _ANSI_RE.sub("", raw.decode("utf-8", "replace"))
    if "\r" in text:
        parts = [p for p in text.split("\r") if p.strip()]
        text = parts[-1] if parts else ""
    return text


@dataclass(frozen=True)
class Chunk:
    """Complete lines read from `start`; the next read starts at `end`."""

    lines: list[str]
    start: int
    end: int


def file_size(path: Path) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


def tail_offset(path: Path, nbytes: int) -> int:
    """The offset of the first complete line among the last `nbytes` bytes of the file."""
    size = file_size(path)
    if size <= nbytes:
        return 0
    start = size - nbytes
    try:
        with open(path, "rb") as f:
            f.seek(start - 1)
            data = f.read(min(nbytes, CHUNK_BYTES) + 1)
    except OSError:
        return start
    nl = data.find(b"\n")
    return start if nl < 0 else start - 1 + nl + 1


def read_chunk(path: Path, offset: int, final: bool = False, limit: int = CHUNK_BYTES) -> Chunk:
    """Read whole lines from `offset`, at most `limit` bytes.

    A trailing partial line is left for the next read, unless the writer is gone (`final`) or
    the line alone exceeds `limit` (then it is cut, so one huge line cannot stall the stream).
    """
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read(limit)
    except OSError:
        return Chunk([], offset, offset)
    if not data:
        return Chunk([], offset, offset)
    nl = data.rfind(b"\n")
    if nl >= 0:
        data = data[: nl + 1]
    elif not final and len(data) < limit:
        return Chunk([], offset, offset)
    body = data[:-1] if data.endswith(b"\n") else data
    lines = [clean_line(x) for x in body.split(b"\n")]
    return Chunk(lines, offset, offset + len(data))


def iter_file(path: Path, offset: int = 0) -> Iterator[Chunk]:
    """All complete chunks of a (finished) file from `offset`."""
    while True:
        chunk = read_chunk(path, offset, final=True)
        if chunk.end == offset:
            return
        yield chunk
        offset = chunk.end


def search(path: Path, query: str, limit: int = 500) -> list[dict[str, object]]:
    """Lines containing `query` (case-insensitive) in the whole log, with their byte offsets,
    for a search beyond the lines the browser keeps."""
    needle = query.lower()
    hits: list[dict[str, object]] = []
    lineno = 0
    for chunk in iter_file(path):
        for line in chunk.lines:
            lineno += 1
            if needle in line.lower():
                hits.append({"line": lineno, "text": line})
                if len(hits) >= limit:
                    return hits
    return hits


def sse(event: str, data: object, event_id: int | None = None) -> bytes:
    """One Server-Sent Event (data is JSON, so it is always a single line)."""
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()
