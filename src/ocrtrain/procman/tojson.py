"""One conversion of records (frozen dataclasses, enums, tuples) to JSON-ready values.

A field whose metadata has `json=False` stays out (identities kept for the next snapshot, a
back-reference); a record's `json_extra()` adds computed values (a property such as `ok`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from enum import Enum
from typing import Any

HIDDEN: dict[str, Any] = {"json": False}  # field(metadata=HIDDEN): not in the JSON


def to_json(obj: Any) -> Any:
    """`obj` as JSON-ready values (dicts, lists, str, numbers, bool, None)."""
    if isinstance(obj, Enum):
        return obj.value
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out = {
            f.name: to_json(getattr(obj, f.name))
            for f in dataclasses.fields(obj)
            if f.metadata.get("json", True)
        }
        extra = getattr(obj, "json_extra", None)
        if extra is not None:
            out.update({k: to_json(v) for k, v in extra().items()})
        return out
    if isinstance(obj, Mapping):
        return {str(k): to_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [to_json(v) for v in obj]
    return obj
