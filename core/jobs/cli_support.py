"""What every `ae` command shares: logging set-up, one-line errors, exit codes, shared options.

Exit codes: 0 success, 1 failure, 2 bad usage or bad input, 3 a batch job finished but rejected some
inputs (see the batch commands). Libraries raise UserError; only here is it turned into a message.
"""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable, Iterable
from enum import Enum
from typing import Annotated, Any, TypeVar

import typer

from core.errors import UnavailableError, UserError
from core.jobs.manifest import EXIT_FAILURE, EXIT_OK, EXIT_PARTIAL, EXIT_USAGE  # noqa: F401 - re-exported

F = TypeVar("F", bound=Callable[..., Any])

DeviceOpt = Annotated[str, typer.Option("--device", help="Where the model runs: auto (CUDA, then MPS, then CPU), "
                                        "cpu, cuda or mps.")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Random seed: same seed, same result on CPU.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars or info logs.")]
VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", help="Debug logs on stderr.")]
ThreadsOpt = Annotated[int | None, typer.Option(
    "--threads", min=1, help="CPU threads for torch (at least 1). Default: OMP_NUM_THREADS if set, else 1 for "
    "`tsad monitor` (a record or micro-batch at a time gains nothing from more threads and slows down on a busy "
    "machine) and torch's default (one per core) for `tsad score` and `tsad detect`.")]
EngineOpt = Annotated[str, typer.Option(
    "--engine", help="Where the units of work run: local (this process, the default) or ray (a Ray cluster: "
    "started on this machine for the job, or the one at --address; needs the extra: pip install "
    "\"ae-toolkit\\[ray]\"). With ray, --out is a folder of Parquet shards (part-NNNNN.parquet) that pandas and "
    "pyarrow read as one table.")]
AddressOpt = Annotated[str | None, typer.Option(
    "--address", help="With --engine ray: the cluster to join (auto: the one `ray start --head` runs on this "
    "machine, HOST:PORT, or ray://HOST:PORT for Ray Client). Default: start a local Ray for this job.")]
WorkersOpt = Annotated[int | None, typer.Option(
    "--workers", min=1, help="With --engine ray: worker processes, one CPU and one torch thread each "
    "(default: every CPU of the cluster).")]


def setup_logging(quiet: bool = False, verbose: bool = False) -> None:
    from rich.console import Console
    from rich.logging import RichHandler

    level = logging.WARNING if quiet else (logging.DEBUG if verbose else logging.INFO)
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_ae_handler", False):
            root.removeHandler(h)
    handler = RichHandler(console=Console(stderr=True), show_time=False, show_path=False, markup=False)
    handler._ae_handler = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
    for noisy in ("matplotlib", "PIL", "fontTools"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def fail(message: str, code: int = EXIT_USAGE) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def cli_errors(fn: F) -> F:
    """Run a command body, turning known errors into one line on stderr and an exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort, SystemExit):
            raise
        except UserError as exc:
            raise fail(str(exc), EXIT_USAGE) from None
        except UnavailableError as exc:
            raise fail(str(exc), EXIT_FAILURE) from None
        except FileNotFoundError as exc:
            raise fail(f"file not found: {exc.filename or exc}", EXIT_USAGE) from None
        except PermissionError as exc:
            raise fail(f"permission denied: {exc.filename or exc}", EXIT_USAGE) from None
        except KeyboardInterrupt:
            raise fail("interrupted", 130) from None
        except Exception as exc:  # noqa: BLE001 - the last line of defence: one line, exit 1
            logging.getLogger("ae").debug("unhandled error", exc_info=True)
            raise fail(f"{type(exc).__name__}: {exc}", EXIT_FAILURE) from None

    return wrapper  # type: ignore[return-value]


def echo_table(title: str, columns: list[str], rows: list[list[Any]]) -> None:
    """Print a result table to stdout as markdown-ish text that pastes into a README."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, box=box.MARKDOWN)
    for c in columns:
        table.add_column(c, justify="left" if c == columns[0] else "right")
    for r in rows:
        table.add_row(*[_fmt(v) for v in r])
    Console(file=sys.stdout, width=200).print(table)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 1000 else f"{v:.0f}"
    return "" if v is None else str(v)


def choice_enum(name: str, values: Iterable[str]) -> type[Enum]:
    """A str Enum of a registry's names, so an option's `--help` lists them and Typer rejects others
    (exit 2). Use `.value` for the chosen name."""
    return Enum(name, {v: v for v in values}, type=str)  # type: ignore[return-value]
