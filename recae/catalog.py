"""The model's item catalogue: ids, titles and training popularity, searchable by title.

Users know movies by title, not by id: `search` finds items whose title contains some text, and
`resolve` turns what a user typed (an id or a title) into one item id, or says precisely why it
cannot (unknown, or ambiguous with the candidates). Matching ignores case, and MovieLens' trailing
articles ("Godfather, The (1972)") also match in their usual order ("The Godfather").
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pandas as pd

from core.errors import UserError
from recae.interactions import IdMap

CANDIDATES_SHOWN = 5  # candidates named in an "ambiguous title" error
_TRAILING_ARTICLE = re.compile(r"^(?P<name>.+), (?P<article>The|A|An)(?P<rest>\s*\(.*)?$", re.IGNORECASE)


def _forms(title: str) -> tuple[str, ...]:
    """The casefolded title, plus its article-first form when MovieLens moved the article to the end."""
    folded = title.strip().casefold()
    m = _TRAILING_ARTICLE.match(folded)
    if m is None:
        return (folded,)
    return folded, f"{m['article']} {m['name']}{m['rest'] or ''}".strip()


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


class Catalog:
    """`titles[i]` (None where unknown) and `popularity[i]` (ratings in training) of item index i."""

    def __init__(self, item_map: IdMap, titles: list[str | None] | None, popularity: np.ndarray) -> None:
        self.item_map = item_map
        self.titles = titles
        self.popularity = np.asarray(popularity, dtype=np.int64)
        self._forms = [(_forms(t) if t else ()) for t in titles] if titles is not None else []

    @property
    def has_titles(self) -> bool:
        return self.titles is not None and any(self.titles)

    def title(self, idx: int) -> str | None:
        return self.titles[idx] if self.titles is not None else None

    def frame(self, idx: np.ndarray | list[int]) -> pd.DataFrame:
        """item, title, popularity of the given item indices, in that order."""
        idx = np.asarray(idx, dtype=np.int64)
        return pd.DataFrame({"item": [_plain(v) for v in self.item_map.to_raw(idx)],
                             "title": [self.title(int(i)) for i in idx],
                             "popularity": self.popularity[idx]})

    def _ranked(self, idx: list[int]) -> list[int]:
        """Most rated first (the movie a user most likely means), then by title."""
        return sorted(idx, key=lambda i: (-self.popularity[i], self.title(i) or ""))

    def matches(self, text: str) -> list[int]:
        """Indices of items whose title contains `text` (case-insensitive), exact titles first, then
        the most rated."""
        key = text.strip().casefold()
        exact = [i for i, forms in enumerate(self._forms) if key in forms]
        rest = [i for i, forms in enumerate(self._forms) if key not in forms and any(key in f for f in forms)]
        return self._ranked(exact) + self._ranked(rest)

    def search(self, text: str | None, limit: int = 20) -> tuple[pd.DataFrame, int]:
        """Up to `limit` matching items (every item, most rated first, when `text` is None or blank)
        and how many matched in all."""
        if limit < 1:
            raise UserError(f"--limit must be at least 1, got {limit}")
        if text is not None and text.strip():
            self._need_titles(f"search for {text.strip()!r}")
            found = self.matches(text)
        else:
            found = self._ranked(list(range(len(self.item_map))))
        return self.frame(found[:limit]), len(found)

    def resolve(self, ref: str) -> Any:
        """The raw item id that `ref` names: an item id of the model; else the one title equal to it
        (case-insensitive); else the one title containing it. Ambiguous or unknown → UserError."""
        ref = ref.strip()
        if not ref:
            raise UserError("an empty item name")
        if ref in self.item_map:
            return _plain(self.item_map.to_raw(self.item_map.to_index(ref)))
        if not self.has_titles:
            raise UserError(f"unknown item {ref!r}: not an item id of this model, and the model holds no titles "
                            "to search (train on ml-100k/ml-1m, or with --items FILE, to rate by title)")
        key = ref.casefold()
        exact = [i for i, forms in enumerate(self._forms) if key in forms]
        found = exact or self.matches(ref)
        if len(found) == 1:
            return _plain(self.item_map.to_raw(found[0]))
        if not found:
            raise UserError(f"unknown item {ref!r}: no item id or title matches it "
                            f"(find titles with: ae recae items --model DIR --search TEXT)")
        shown = "; ".join(f"{_plain(self.item_map.to_raw(i))} {self.title(i)}" for i in found[:CANDIDATES_SHOWN])
        more = f" and {len(found) - CANDIDATES_SHOWN} more" if len(found) > CANDIDATES_SHOWN else ""
        kind = "items have this title" if exact else "titles contain it"
        raise UserError(f"item {ref!r} is ambiguous: {len(found)} {kind}: {shown}{more}; "
                        "give the item id or more of the title")

    def _need_titles(self, what: str) -> None:
        if not self.has_titles:
            raise UserError(f"cannot {what}: the model holds no titles (train on ml-100k/ml-1m, or with "
                            "--items FILE naming each item's title)")
