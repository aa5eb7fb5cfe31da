"""The `ae` command line: one Typer root for the core zoo and the two applications."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from core.errors import UserError
from core.jobs.cli_support import DeviceOpt, QuietOpt, SeedOpt, VerboseOpt, cli_errors, echo_table, setup_logging
from recae.cli import app as recae_app
from tsad.cli import app as tsad_app

ALL_KINDS = "vanilla,deep,conv,denoising,sparse,vae"

app = typer.Typer(
    help="Autoencoders for recommendations and anomaly detection. "
         "Exit codes: 0 ok, 1 failure, 2 bad usage or input, 3 batch finished with rejected inputs.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(recae_app, name="recae")
app.add_typer(tsad_app, name="tsad")
data_app = typer.Typer(help="Known datasets: list, fetch (download + checksum), verify.", no_args_is_help=True)
app.add_typer(data_app, name="data")


@data_app.command("list")
@cli_errors
def data_list() -> None:
    """List known datasets, their licence and whether they are present under AE_DATA_DIR.

    Example: ae data list
    """
    from data.registry import data_dir, dataset_status, registry

    status = dataset_status()
    typer.echo(f"data dir: {data_dir()}")
    for name, entry in registry().items():
        typer.echo(f"{name:8s} {status[name]:28s} {entry['title']} ({entry['licence'].split(':')[0]})")


@data_app.command("fetch")
@cli_errors
def data_fetch(name: Annotated[str, typer.Argument(help="Dataset name, see `ae data list`.")],
               quiet: QuietOpt = False) -> None:
    """Download a dataset from its official source into AE_DATA_DIR and verify every checksum.

    Example: ae data fetch ml-100k
    """
    from data.registry import data_dir, ensure_dataset

    setup_logging(quiet)
    root = ensure_dataset(name, download=True)
    typer.echo(f"{name} is ready under {data_dir() if root is None else root}")


@data_app.command("verify")
@cli_errors
def data_verify(name: Annotated[str, typer.Argument(help="Dataset name, see `ae data list`.")]) -> None:
    """Check the MD5 of every file of a dataset; exit 1 if any is missing or differs.

    Example: ae data verify nab
    """
    from data.registry import verify

    bad = verify(name)
    if bad:
        typer.echo(f"error: {len(bad)} file(s) of {name} missing or changed, first: {bad[0]}", err=True)
        raise typer.Exit(1)
    typer.echo(f"{name}: all checksums match")


@app.command()
@cli_errors
def info(as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")] = False) -> None:
    """Show library versions, the device `auto` picks, and where datasets are looked for."""
    from core.artifact import library_versions
    from core.device import describe_devices
    from data.registry import data_dir, dataset_status

    report = {"versions": library_versions(), "devices": describe_devices(), "data_dir": str(data_dir()),
              "datasets": dataset_status()}
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    for k, v in report["versions"].items():
        typer.echo(f"{k:12s} {v}")
    dev = report["devices"]
    typer.echo(f"{'device':12s} auto -> {dev['auto']} (cuda: {dev['cuda']}, mps: {dev['mps']}, "
               f"cpu threads: {dev['threads']})")
    typer.echo(f"{'data dir':12s} {report['data_dir']}")
    for name, status in report["datasets"].items():
        typer.echo(f"  {name:10s} {status}")


@app.command()
@cli_errors
def zoo(
    out: Annotated[Path, typer.Option("--out", help="Directory for metrics.json and the PNG plots.")] = Path("zoo_out"),
    code_size: Annotated[int, typer.Option("--code-size", help="Code (bottleneck) size of every model and PCA.")] = 8,
    epochs: Annotated[int, typer.Option("--epochs", help="Training epochs per model.")] = 150,
    kinds: Annotated[str, typer.Option("--kinds", help="Comma-separated subset of the kinds to train.")] = ALL_KINDS,
    device: DeviceOpt = "auto",
    seed: SeedOpt = 0,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Train every autoencoder kind on scikit-learn's digits and compare with PCA at the same code size.

    Example: ae zoo --out zoo_out --code-size 8
    """
    from core.jobs.zoo import ZooConfig, run_zoo

    setup_logging(quiet, verbose)
    cfg = ZooConfig(code_size=code_size, epochs=epochs, device=device, seed=seed, progress=not quiet,
                    kinds=tuple(k.strip() for k in kinds.split(",") if k.strip()))
    summary = run_zoo(out, cfg)
    rows = []
    for name, m in summary["models"].items():
        rows.append([name, m["code_size"], m["test_mse"], m.get("noisy_test_mse"), m.get("train_seconds")])
    echo_table(f"Digits reconstruction, code size {code_size} (test MSE, pixels in [0, 1])",
               ["model", "code", "test_mse", "noisy_test_mse", "train_s"], rows)
    models = summary["models"]
    if "deep" in models:
        verdict = "beats" if models["deep"]["test_mse"] < models["pca"]["test_mse"] else "does NOT beat"
        deep, pca = models["deep"]["test_mse"], models["pca"]["test_mse"]
        typer.echo(f"deep autoencoder {verdict} PCA: {deep:.5f} vs {pca:.5f}")
    typer.echo(f"wrote {out / 'metrics.json'} and plots in {out}")


@app.command()
@cli_errors
def demo(
    out: Annotated[Path, typer.Option("--out", help="Folder for report.html and its plots.")] = Path("demo"),
    quick: Annotated[bool, typer.Option("--quick", help="A few epochs only (a smoke test, not the real numbers).")]
    = False,
    download: Annotated[bool, typer.Option("--download/--no-download", help="Fetch missing datasets from their "
                                           "official sources (checksums verified).")] = True,
    device: DeviceOpt = "auto",
    seed: SeedOpt = 0,
    quiet: QuietOpt = False,
) -> None:
    """The whole product on its embedded default: recommender and anomaly detector on real data,
    summarised in one self-contained HTML report. Uses ml-100k and nab under AE_DATA_DIR, downloading
    them (checksums verified) when they are missing, and the Loghub OpenSSH sample when loghub is
    there (a log model alerting on an injected brute-force burst; skipped with a note otherwise).

    Example: ae demo --out demo
    """
    import time

    from core.jobs.report import write_report
    from data.registry import data_dir, ensure_dataset
    from recae import demo as recae_demo
    from tsad import demo as tsad_demo

    setup_logging(quiet)
    for name in ("ml-100k", "nab"):
        try:
            ensure_dataset(name, download=download)
        except UserError as exc:
            from data.registry import instructions

            typer.echo(f"error: {exc}", err=True)
            if download:
                typer.echo(f"error: {instructions(name)}", err=True)
            raise typer.Exit(1) from None
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    root = data_dir()
    sections = [recae_demo.run(root, out, device, seed, quick, not quiet),
                tsad_demo.run(root, out, device, seed, quick, not quiet),
                tsad_demo.run_logs(root, out, device, seed, quick, not quiet)]
    report = write_report(out / "report.html", "ae demo: autoencoders for recommendations and anomalies", sections,
                          meta={"data": str(root), "device": device, "seed": seed,
                                "seconds": f"{time.perf_counter() - t0:.0f}"})
    typer.echo(f"report written to {report.resolve()}")


def main() -> None:
    """The `ae` program: run the command, then leave without the interpreter's teardown.

    Unloading torch alone takes about half a second (a second on a busy machine): a monitor told
    to stop by its supervisor, or a cron job, should be gone as soon as its work is saved. Every
    command closes and renames its outputs before it returns, so after flushing the standard
    streams and the log handlers there is nothing left for the teardown to do.
    """
    try:
        app()
        code: object = 0
    except SystemExit as exc:
        code = exc.code
    if code is None:
        code = 0
    elif not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (ae … | head): nothing more can be written
            pass
    os._exit(code)


if __name__ == "__main__":
    main()
