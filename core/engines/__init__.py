"""Engines: where a batch job's units of work run.

`local` (the default) runs them in this process and needs nothing beyond the base install. `ray`
(the optional extra `pip install "ae-toolkit[ray]"`) runs them on a Ray cluster, started locally for
the job or reached at `--address`: see core.engines.ray_engine. Both call the same pure scoring
function of (model directory, unit of work), so their rows are the same.
"""

from __future__ import annotations

from core.errors import UserError

ENGINES = ("local", "ray")
RAY_EXTRA = 'pip install "ae-toolkit[ray]"'


def check_engine(engine: str, address: str | None = None, workers: int | None = None) -> None:
    """Validate the engine options together, before any work starts (exit 2 on a bad combination)."""
    if engine not in ENGINES:
        raise UserError(f"unknown engine {engine!r}; choose {' or '.join(ENGINES)}")
    if engine == "local" and (address is not None or workers is not None):
        given = "--address" if address is not None else "--workers"
        raise UserError(f"{given} is for --engine ray; the local engine runs in this process")
    if workers is not None and (isinstance(workers, bool) or workers < 1):
        raise UserError(f"--workers must be at least 1, got {workers}")
    if address is not None and not address.strip():
        raise UserError("--address is empty; give auto, HOST:PORT or ray://HOST:PORT")
