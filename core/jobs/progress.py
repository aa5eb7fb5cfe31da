"""One way to show progress: rich bars on stderr, or nothing when silenced (`--quiet`).

Results go to stdout or files, so bars never mix with output that scripts read.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import nullcontext
from typing import Any, TypeVar

T = TypeVar("T")


def progress_bar(enabled: bool, with_status: bool = False) -> Any:
    """A `rich.progress.Progress` context on stderr, or a null context yielding None when disabled.

    `with_status` adds a text column fed by `update(task, status=...)` (the trainer's loss)."""
    if not enabled:
        return nullcontext(None)
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns: list[Any] = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn()]
    if with_status:
        columns.append(TextColumn("{task.fields[status]}"))
    columns.append(TimeRemainingColumn())
    return Progress(*columns, console=Console(stderr=True), transient=not with_status)


def track(items: Iterable[T], description: str, enabled: bool = True, total: int | None = None) -> Iterator[T]:
    """Iterate over `items`, advancing a bar when enabled."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with progress_bar(enabled) as prog:
        if prog is None:
            yield from items
            return
        task = prog.add_task(description, total=total)
        for item in items:
            yield item
            prog.advance(task)
