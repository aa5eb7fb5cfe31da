"""Parse JSON that a user or another process may have written: every failure is one UserError.

`json.loads` raises `JSONDecodeError` for bad syntax but `RecursionError` for deeply nested
input (`[[[[…` a few thousand deep), which would escape as a crash with exit 1. Every reader of
JSON that came from outside (configs, state files, manifests, stream lines) goes through here.
"""

from __future__ import annotations

import json
from typing import Any

from core.errors import UserError

MAX_DEPTH = 64  # far deeper than anything this project writes


def parse_json(text: str | bytes, what: str, error: type[UserError] = UserError) -> Any:
    """`text` decoded, or `error("<what> is not valid JSON: <reason>")` (a `what` ending in ':'
    gives "<what> <reason>")."""
    lead = what if what.endswith(":") else f"{what} is not valid JSON:"
    try:
        value = json.loads(text)
    except RecursionError:
        raise error(f"{lead} nested too deeply") from None
    except (ValueError, TypeError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise error(f"{lead} {exc}") from None
    if _depth(value) > MAX_DEPTH:
        raise error(f"{lead} nested more than {MAX_DEPTH} levels deep")
    return value


def _depth(value: Any, limit: int = MAX_DEPTH + 1) -> int:
    """Nesting depth, counted iteratively (so a deep value cannot overflow the stack here either)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (list, dict)):
            deepest = max(deepest, depth)
            if deepest > limit:
                return deepest
            stack.extend((v, depth + 1) for v in (item.values() if isinstance(item, dict) else item))
    return deepest
