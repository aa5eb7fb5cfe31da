"""`ae recae`: train, evaluate, recommend and batch-score with the autoencoder recommender."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from core.errors import UserError
from core.jobs.cli_support import (
    EXIT_PARTIAL,
    DeviceOpt,
    QuietOpt,
    SeedOpt,
    VerboseOpt,
    cli_errors,
    echo_table,
    setup_logging,
)
from recae.models import REGISTRY, get_model, model_names

app = typer.Typer(help="Autoencoder movie recommender: train, evaluate, recommend, score.", no_args_is_help=True)


def _model_name(value: str) -> str:
    """An unknown name exits 2 with the registry's choices (BadParameter keeps the message on every
    Typer version; a plain ValueError's text is dropped by older ones)."""
    try:
        return get_model(value).name
    except UserError as exc:
        raise typer.BadParameter(str(exc)) from None


def _names(implicit: bool) -> str:
    return ", ".join(name for name, spec in REGISTRY.items() if spec.implicit == implicit)


DatasetOpt = Annotated[str, typer.Option("--dataset", help="ml-100k, ml-1m (from AE_DATA_DIR) or a ratings "
                                         "CSV/Parquet file.")]
ModelOpt = Annotated[str, typer.Option(
    "--model", parser=_model_name, metavar="[" + "|".join(model_names()) + "]", autocompletion=model_names,
    help=f"{_names(False)} (explicit ratings) or {_names(True)} (implicit, top-N).")]
EpochsOpt = Annotated[int | None, typer.Option("--epochs", help="Training epochs (default: the model's recipe).")]
_FILE = "Ratings file (--dataset FILE)"
UserColOpt = Annotated[str, typer.Option("--user-col", help="User id column.", rich_help_panel=_FILE)]
ItemColOpt = Annotated[str, typer.Option("--item-col", help="Item id column.", rich_help_panel=_FILE)]
RatingColOpt = Annotated[str, typer.Option("--rating-col", help="Rating column.", rich_help_panel=_FILE)]
TimeColOpt = Annotated[str | None, typer.Option("--time-col", help="Timestamp column (keeps the latest duplicate).",
                                                rich_help_panel=_FILE)]


@app.command()
@cli_errors
def train(
    out: Annotated[Path, typer.Option("--out", help="Model directory to write.")],
    dataset: DatasetOpt = "ml-100k",
    split: Annotated[str, typer.Option("--split", help="Train on the training part of u1…u5/ua/ub or random "
                                       "(90/10), or on everything: none.")] = "none",
    model: ModelOpt = "autorec",
    epochs: EpochsOpt = None,
    device: DeviceOpt = "auto",
    seed: SeedOpt = 0,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
    user_col: UserColOpt = "user",
    item_col: ItemColOpt = "item",
    rating_col: RatingColOpt = "rating",
    time_col: TimeColOpt = None,
) -> None:
    """Train a recommender and save it (weights, id maps, rating scale, training matrix).

    Example: ae recae train --dataset ml-100k --model autorec --out models/autorec
    """
    from recae.datasets import NAMED_DATASETS
    from recae.evaluate import training_ratings
    from recae.recommender import AutoencoderRecommender

    setup_logging(quiet, verbose)
    rec = AutoencoderRecommender(model=model, epochs=epochs, device=device, seed=seed, progress=not quiet)
    train_frame = training_ratings(dataset, split, seed=seed, user_col=user_col, item_col=item_col,
                                   rating_col=rating_col, time_col=time_col)
    rec.fit(train_frame)
    rec.save(out, metrics={"final_train_loss": rec.history_.train_loss[-1]},
             dataset=dataset if dataset in NAMED_DATASETS else None)
    typer.echo(f"trained {model} on {len(train_frame)} ratings ({len(rec.user_map_)} users, "
               f"{len(rec.item_map_)} items) in {rec.history_.seconds:.1f} s; saved {out}")


@app.command()
@cli_errors
def evaluate(
    dataset: DatasetOpt = "ml-100k",
    split: Annotated[str, typer.Option("--split", help="u1…u5, ua, ub (official ML-100K folds), random (90/10) "
                                       "or users (held-out users, top-N).")] = "u1",
    model: ModelOpt = "autorec",
    epochs: EpochsOpt = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write metrics and baselines as JSON.")] = None,
    device: DeviceOpt = "auto",
    seed: SeedOpt = 0,
    quiet: QuietOpt = False,
    user_col: UserColOpt = "user",
    item_col: ItemColOpt = "item",
    rating_col: RatingColOpt = "rating",
    time_col: TimeColOpt = None,
) -> None:
    """Train and evaluate in one go; prints the model beside baselines computed in the same run.

    Example: ae recae evaluate --dataset ml-100k --split u1 --model autorec --json u1.json
    """
    from core.jobs.atomic import atomic_write_text
    from recae.evaluate import evaluate_split
    from recae.recommender import AutoencoderRecommender

    setup_logging(quiet)
    if json_out is not None and json_out.parent.exists() and not json_out.parent.is_dir():
        raise UserError(f"cannot write {json_out}")
    rec = AutoencoderRecommender(model=model, epochs=epochs, device=device, seed=seed, progress=not quiet)
    result = evaluate_split(rec, dataset, split, seed=seed, user_col=user_col, item_col=item_col,
                            rating_col=rating_col, time_col=time_col)
    keys = list(result["metrics"])
    rows = [[f"{model} (ours)", *[result["metrics"][k] for k in keys]]]
    rows += [[name, *[m[k] for k in keys]] for name, m in result["baselines"].items()]
    echo_table(f"{dataset} split {split}: {model} vs baselines (same run; trained in {result['train_seconds']} s)",
               ["model", *keys], rows)
    if json_out is not None:
        doc = {"dataset": dataset, "split": split, "model": model, **result}
        atomic_write_text(json_out, json.dumps(doc, indent=2))
        typer.echo(f"wrote {json_out}")


def _parse_rate(rate: str) -> dict:
    out = {}
    for part in rate.split(","):
        if not part.strip():
            continue
        item, sep, value = part.partition(":")
        if not sep:
            raise UserError(f"--rate expects ITEM:RATING pairs separated by commas, got {part!r}")
        try:
            out[_maybe_int(item.strip())] = float(value)
        except ValueError:
            raise UserError(f"--rate: rating {value!r} for item {item.strip()!r} is not a number") from None
    if not out:
        raise UserError("--rate is empty")
    return out


def _maybe_int(s: str):  # noqa: ANN202
    try:
        return int(s)
    except ValueError:
        return s


@app.command()
@cli_errors
def recommend(
    model: Annotated[Path, typer.Option("--model", help="Model directory from `ae recae train`.")],
    user: Annotated[str | None, typer.Option("--user", help="A user id from the training data.")] = None,
    rate: Annotated[str | None, typer.Option("--rate", help="A new user's ratings, e.g. \"50:5,181:4,1:3\" "
                                             "(fold-in, no retraining).")] = None,
    k: Annotated[int, typer.Option("-k", "--k", help="How many recommendations.")] = 10,
    device: DeviceOpt = "auto",
) -> None:
    """Top-k unseen items for a known user, or for a new user from a few ratings, with titles.

    Example: ae recae recommend --model models/autorec --user 196 -k 10
    """
    from recae.datasets import load_items
    from recae.recommender import AutoencoderRecommender

    setup_logging(True)
    if (user is None) == (rate is None):
        raise UserError("give exactly one of --user or --rate")
    rec = AutoencoderRecommender.load(model, device=device)
    if user is not None:
        table = rec.recommend(_maybe_int(user), k)
        who = f"user {user}"
    else:
        table = rec.fold_in(_parse_rate(rate), k)
        who = "a new user (fold-in)"
    items = load_items(rec.dataset_) if rec.dataset_ else None
    if items is not None:
        table = table.merge(items[["item", "title"]], on="item", how="left")
    cols = list(table.columns)
    echo_table(f"Top {k} for {who} ({rec.model})", cols, table.values.tolist())


@app.command()
@cli_errors
def score(
    model: Annotated[Path, typer.Option("--model", help="Model directory from `ae recae train`.")],
    out: Annotated[Path, typer.Option("--out", help="Output file: .parquet or .csv (written atomically).")],
    k: Annotated[int, typer.Option("-k", "--k", help="Recommendations per user.")] = 20,
    users: Annotated[Path | None, typer.Option("--users", help="Text file with one user id per line "
                                               "(default: every user).")] = None,
    skip_existing: Annotated[bool, typer.Option("--skip-existing", help="Do nothing if the same model and inputs "
                                                "already produced --out.")] = False,
    device: DeviceOpt = "auto",
    quiet: QuietOpt = False,
) -> None:
    """Batch top-k for all (or the listed) users, plus OUT.manifest.json. Exit 3 if some users were unknown.

    Example: ae recae score --model models/autorec --out recs.parquet -k 20
    """
    from core.artifact import directory_hash
    from core.jobs.hashing import file_digest
    from core.jobs.manifest import is_up_to_date, manifest_path_for
    from recae.scoring import score_all

    setup_logging(quiet)
    if skip_existing:
        inputs = [] if users is None else [{"path": str(users), "sha256": file_digest(users)}]
        if is_up_to_date(manifest_path_for(out), directory_hash(model), inputs, {"k": k}):
            typer.echo(f"{out} is up to date; nothing to do")
            return
    manifest = score_all(model, out, k, users, device=device, progress=not quiet)
    typer.echo(f"scored {manifest.rows_in - len(manifest.rejected)} users -> {manifest.rows_out} rows in "
               f"{manifest.duration_s:.2f} s; wrote {out} and {manifest_path_for(out)}")
    if manifest.rejected:
        typer.echo(f"warning: {len(manifest.rejected)} user(s) rejected (see the manifest)", err=True)
        raise typer.Exit(EXIT_PARTIAL)
