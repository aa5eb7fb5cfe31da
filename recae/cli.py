"""`ae recae`: train, evaluate, recommend and batch-score with the autoencoder recommender."""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from pathlib import Path
from typing import Annotated

import typer

from core.errors import UserError
from core.jobs.cli_support import (
    EXIT_PARTIAL,
    AddressOpt,
    DeviceOpt,
    EngineOpt,
    QuietOpt,
    SeedOpt,
    VerboseOpt,
    WorkersOpt,
    cli_errors,
    echo_table,
    setup_logging,
)
from recae.catalog import Catalog
from recae.models import REGISTRY, get_model, model_names
from recae.selection import SelectionPlan

app = typer.Typer(help="Autoencoder movie recommender: train, evaluate, find items, recommend, score.",
                  no_args_is_help=True)


def _model_name(value: str) -> str:
    """An unknown name exits 2 with the registry's choices (BadParameter keeps the message on every
    Typer version; a plain ValueError's text is dropped by older ones)."""
    try:
        return get_model(value).name
    except UserError as exc:
        raise typer.BadParameter(str(exc)) from None


def _model_or_all(value: str) -> str:
    """`evaluate --model`: a registry name, or `all` (every model the split can measure)."""
    return value if value == "all" else _model_name(value)


def _names(implicit: bool) -> str:
    return ", ".join(name for name, spec in REGISTRY.items() if spec.implicit == implicit)


DatasetOpt = Annotated[str, typer.Option("--dataset", help="ml-100k, ml-1m (from AE_DATA_DIR) or a ratings "
                                         "CSV/Parquet file.")]
ModelOpt = Annotated[str, typer.Option(
    "--model", parser=_model_name, metavar="[" + "|".join(model_names()) + "]", autocompletion=model_names,
    help=f"{_names(False)} (explicit ratings) or {_names(True)} (implicit, top-N).")]
EvalModelOpt = Annotated[str, typer.Option(
    "--model", parser=_model_or_all, metavar="[" + "|".join(model_names()) + "]|all",
    autocompletion=lambda: (*model_names(), "all"),
    help=f"{_names(False)} (explicit ratings) or {_names(True)} (implicit, top-N); all: every model the split "
    "measures, in one table with the baselines.")]
EpochsOpt = Annotated[int | None, typer.Option("--epochs", help="Training epochs (default: the model's recipe).")]
TuneOpt = Annotated[bool | None, typer.Option(
    "--tune/--no-tune", help="Explicit models (" + ", ".join(n for n, s in REGISTRY.items() if not s.implicit) +
    "): choose the data-dependent settings (L2 weight, epochs, width: the model's small grid, at most 6 fits, "
    "cheapest first) on a seeded validation split of the given training ratings (10 % of each user's), beside the "
    "user+item bias baseline on the same split, then refit on all of them with the choice; warns when the model "
    "loses to the baseline and leans on it by a validation-chosen weight. Costs about one extra training per "
    "candidate (2-5x a plain fit; minutes for autorec on a large catalogue, see --tune-budget). Default: on, "
    "unless --epochs pins the settings.")]
TuneBudgetOpt = Annotated[float, typer.Option(
    "--tune-budget", min=1, help="Seconds the settings search may take; candidates that would overrun it are "
    "skipped (the first is always tried).")]
_FILE = "Ratings file (--dataset FILE)"
UserColOpt = Annotated[str, typer.Option("--user-col", help="User id column.", rich_help_panel=_FILE)]
ItemColOpt = Annotated[str, typer.Option("--item-col", help="Item id column.", rich_help_panel=_FILE)]
RatingColOpt = Annotated[str, typer.Option("--rating-col", help="Rating column.", rich_help_panel=_FILE)]
TimeColOpt = Annotated[str | None, typer.Option("--time-col", help="Timestamp column (keeps the latest duplicate).",
                                                rich_help_panel=_FILE)]


def _rating_scale(value: str | None) -> tuple[float, float] | None:
    """`LO:HI` → (LO, HI): finite, LO < HI, else exit 2 naming the value."""
    if value is None:
        return None
    try:
        lo, hi = (float(part) for part in value.split(":"))
    except ValueError:
        raise UserError(f"--rating-scale {value!r} is not LO:HI, e.g. 1:5") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise UserError(f"--rating-scale {value!r}: the scale needs finite LO < HI, e.g. 1:5")
    return lo, hi


RatingScaleOpt = Annotated[str | None, typer.Option(
    "--rating-scale", metavar="LO:HI", help="The ratings file's scale, e.g. 1:5 or 0.5:5: a rating outside it is "
    "an error naming its row. Without it the scale is inferred (min and max) and logged. ml-100k and ml-1m are 1:5.",
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
    rating_scale: RatingScaleOpt = None,
    items_file: Annotated[Path | None, typer.Option(
        "--items", help="Titles for a ratings file's items: CSV/Parquet with the item id column (--item-col) and a "
        "`title` column, kept with the model so that `items --search` and `recommend --rate TITLE:RATING` work. "
        "ml-100k and ml-1m titles are kept without it.", rich_help_panel=_FILE)] = None,
    tune: TuneOpt = None,
    tune_budget: TuneBudgetOpt = 900.0,
    workers: Annotated[int, typer.Option(
        "--workers", help="Train data-parallel (torch DDP through Ray Train) on N workers, same global batch and "
        "seed; needs the `ray` extra (pip install \"ae-toolkit\\[ray]\"); uses the Ray cluster in RAY_ADDRESS, else "
        "starts a local one. Mini-batch models only (course, deeprec, multdae, multvae); not autorec (full-batch "
        "L-BFGS), recvae or glocalk (their own training loops). The settings search (--tune) fits its candidates "
        "with 1 worker; the final fit uses N.")] = 1,
) -> None:
    """Train a recommender and save it (weights, id maps, rating scale, training matrix, item titles).

    Explicit models first choose their settings on a validation split of the training ratings
    (--tune, the default unless --epochs is given): the search, the validation RMSE beside the bias
    baseline's and the choice are printed and saved with the model (`ae recae info`).

    Example: ae recae train --dataset ml-100k --model autorec --out models/autorec
    """
    from recae.datasets import NAMED_DATASETS, load_items, load_titles_file
    from recae.evaluate import training_ratings
    from recae.recommender import AutoencoderRecommender

    setup_logging(quiet, verbose)
    rec = AutoencoderRecommender(model=model, epochs=epochs, device=device, seed=seed, progress=not quiet,
                                 tune=_plan(tune, epochs, tune_budget, seed), workers=workers)
    rec.check_workers()  # an unsupported model or a missing `ray` fails now, not after reading the data
    # titles are read before training, so that a bad --items file fails in a second, not after an hour
    titles = (load_titles_file(items_file, item_col) if items_file is not None
              else load_items(dataset) if dataset in NAMED_DATASETS else None)
    train_frame = training_ratings(dataset, split, seed=seed, user_col=user_col, item_col=item_col,
                                   rating_col=rating_col, time_col=time_col, scale=_rating_scale(rating_scale))
    rec.fit(train_frame)
    if titles is not None:
        rec.attach_titles(titles)
    rec.save(out, metrics={"final_train_loss": rec.history_.train_loss[-1]},
             dataset=dataset if dataset in NAMED_DATASETS else None)
    n_titles = sum(t is not None for t in rec.titles_) if rec.titles_ is not None else 0
    _echo_selection(rec)
    typer.echo(f"trained {model} on {len(train_frame)} ratings ({len(rec.user_map_)} users, "
               f"{len(rec.item_map_)} items, {n_titles} with titles) in {rec.history_.seconds:.1f} s; saved {out}")


def _plan(tune: bool | None, epochs: int | None, budget: float, seed: int) -> SelectionPlan | bool:
    """--tune/--no-tune, by default on unless --epochs pinned the settings."""
    if tune is None:
        tune = epochs is None
    return SelectionPlan(seed=seed, budget_s=budget) if tune else False


def _echo_selection(rec: object) -> None:
    """The search's record (stdout), and its warnings on stderr through the log."""
    import logging

    stack = getattr(rec, "stack_", None)
    if stack is not None:
        _echo_stack(stack)
        return
    selection = getattr(rec, "selection_", None)
    if selection is None:
        return
    settings = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in rec.settings_.items())
    rows = [[_settings_text(t.settings), t.val_rmse, t.seconds] for t in selection.trials]
    rows += [[f"{_settings_text(s)} (skipped: time budget)", "", ""] for s in selection.skipped]
    rows.append(["bias baseline (user+item)", selection.baseline_rmse, ""])
    if selection.blend_weight < 1.0:
        rows.append([f"shipped: bias + {selection.blend_weight:.2f}·(model − bias)", selection.blended_rmse, ""])
    echo_table(f"{selection.model}: settings search on {selection.val_ratings} validation ratings "
               f"({selection.fit_ratings} fit)", ["candidate", "validation RMSE", "seconds"], rows)
    for line in selection.describe(settings):
        typer.echo(line)
    for warning in selection.warnings():
        logging.getLogger("recae").warning(warning)


def _echo_stack(stack: object) -> None:
    """A stack's held-out record: each member, the blend, the bias baseline (recae.stack)."""
    rows = [[name, f"{w:.3f}", rmse] for name, w, rmse in zip(stack.members, stack.weights,
                                                              stack.member_validation_rmse)]
    rows += [["intercept", f"{stack.intercept:.3f}", ""], ["stack", "", stack.validation_rmse],
             ["bias baseline (user+item)", "", stack.baseline_rmse]]
    echo_table(f"stack: weights fitted on {stack.validation_ratings} held-out ratings ({stack.fit_ratings} fit)",
               ["member", "weight", "held-out RMSE"], rows)


def _settings_text(settings: dict) -> str:
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in settings.items()) or "recipe"


@app.command()
@cli_errors
def evaluate(
    dataset: DatasetOpt = "ml-100k",
    split: Annotated[str, typer.Option("--split", help="u1…u5, ua, ub (official ML-100K folds), random (90/10), "
                                       "users (held-out users, top-N, one split) or folds (5 user folds, top-N: "
                                       "mean ± std and a paired test).")] = "u1",
    model: EvalModelOpt = "autorec",
    epochs: EpochsOpt = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write metrics and baselines as JSON.")] = None,
    device: DeviceOpt = "auto",
    seed: SeedOpt = 0,
    quiet: QuietOpt = False,
    user_col: UserColOpt = "user",
    item_col: ItemColOpt = "item",
    rating_col: RatingColOpt = "rating",
    time_col: TimeColOpt = None,
    rating_scale: RatingScaleOpt = None,
    tune: TuneOpt = None,
    tune_budget: TuneBudgetOpt = 900.0,
) -> None:
    """Train and evaluate in one go; prints the model beside baselines computed in the same run.

    Explicit splits choose the model's settings on a validation split of the training part only
    (--tune, the default unless --epochs is given), never on the test ratings.

    Top-N splits tune every baseline (EASE λ, ItemKNN k/shrink, RP3beta α/β) and the autoencoders'
    epochs on validation users only. --split folds (or --model all) writes `results`, `tuning` and,
    for top-N, `paired` (best autoencoder vs best baseline, per-user NDCG@100) to --json.

    Example: ae recae evaluate --dataset ml-100k --split u1 --model autorec --json u1.json

    Example: ae recae evaluate --dataset ml-100k --split folds --model all --json folds.json
    """
    from core.jobs.atomic import atomic_write_text
    from recae.evaluate import check_protocol, evaluate_all, evaluate_split
    from recae.recommender import AutoencoderRecommender

    setup_logging(quiet)
    if json_out is not None and json_out.parent.exists() and not json_out.parent.is_dir():
        raise UserError(f"cannot write {json_out}")
    check_protocol(model, split)  # a bad combination fails before any data is read or model trained
    columns = dict(user_col=user_col, item_col=item_col, rating_col=rating_col, time_col=time_col,
                   scale=_rating_scale(rating_scale))

    made: dict[str, AutoencoderRecommender] = {}

    def make_rec(name: str) -> AutoencoderRecommender:
        made[name] = AutoencoderRecommender(model=name, epochs=epochs, device=device, seed=seed, progress=not quiet,
                                            tune=_plan(tune, epochs, tune_budget, seed))
        return made[name]

    if model == "all" or split == "folds":
        doc = {"dataset": dataset, "split": split, "model": model,
               **evaluate_all(dataset, split, model, make_rec, seed=seed, **columns)}
        _echo_results(doc)
    else:
        result = evaluate_split(make_rec(model), dataset, split, seed=seed, **columns)
        keys = list(result["metrics"])
        rows = [[f"{model} (ours)", *[result["metrics"][k] for k in keys]]]
        rows += [[name, *[m[k] for k in keys]] for name, m in result["baselines"].items()]
        echo_table(f"{dataset} split {split}: {model} vs baselines (same run; trained in "
                   f"{result['train_seconds']} s)", ["model", *keys], rows)
        doc = {"dataset": dataset, "split": split, "model": model, **result}
    selections = {name: rec.selection_.to_dict() for name, rec in made.items()
                  if getattr(rec, "selection_", None) is not None}
    for rec in made.values():
        _echo_selection(rec)
    if selections:
        doc["selection"] = selections
    stacks = {name: rec.stack_.to_dict() for name, rec in made.items() if getattr(rec, "stack_", None) is not None}
    if stacks:  # a stack's weights and held-out figures, as `info` shows them
        doc["stack"] = stacks
    if json_out is not None:
        atomic_write_text(json_out, json.dumps(doc, indent=2))
        typer.echo(f"wrote {json_out}")


def _echo_results(doc: dict) -> None:
    """The `results` table (mean ± std over folds where there are folds), the settings chosen on
    validation users, and the paired comparison."""
    results, tuning = doc["results"], doc.get("tuning", {})
    keys = list(next(iter(results.values())))
    if doc["split"] == "folds":  # mean ± std cells are wide: the JSON has the rest
        keys = [k for k in keys if k not in ("ndcg@50", "hit@20")]

    def cell(v: object) -> object:
        return f"{v['mean']:.4f} ± {v['std']:.4f}" if isinstance(v, dict) else v

    def chosen(name: str) -> str:
        """Each setting chosen, with the number of folds that chose it when there are folds."""
        picks = Counter(", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in c.items()) or "-"
                        for c in tuning[name]["chosen"]) if name in tuning else Counter()
        if doc["split"] != "folds":
            return "; ".join(picks)
        return "; ".join(f"{p} ×{n}" for p, n in picks.most_common())

    rows = [[name, *[cell(m[k]) for k in keys], *([chosen(name)] if tuning else [])] for name, m in results.items()]
    what = (f"{doc['protocol']['folds']} user folds, mean ± std" if doc["split"] == "folds"
            else f"split {doc['split']}")
    echo_table(f"{doc['dataset']} {what}: every model beside the baselines (same run)",
               ["model", *keys, *(["chosen on validation"] if tuning else [])], rows)
    paired = doc.get("paired")
    if paired is not None:
        typer.echo(f"paired {paired['metric']}: {paired['model']} − {paired['baseline']} = "
                   f"{paired['mean_difference']:+.4f} (95% CI {paired['ci95'][0]:+.4f} … {paired['ci95'][1]:+.4f}), "
                   f"Wilcoxon p = {paired['p_value']:.3g} over {paired['users']} users")


# an entry's rating follows its last ':'; titles may hold ':' and ',' themselves
_RATED = re.compile(r"^(?P<item>.*):\s*(?P<rating>[-+]?(?:\d+(?:\.\d*)?|\.\d+))\s*$", re.DOTALL)


def _parse_rate(rate: str) -> list[tuple[str, float]]:
    """`--rate` as (item id or title, rating) pairs, in the order given. Entries are separated by
    commas, but a comma ends an entry only once the text so far ends in `:NUMBER`, so titles such as
    "Good, the Bad and the Ugly, The (1966):5" or "Wallace & Gromit: The Best of Aardman Animation
    (1996):4" need no quoting inside the option."""
    pairs: list[tuple[str, float]] = []
    pending = ""
    for piece in rate.split(","):
        pending = f"{pending},{piece}" if pending else piece
        m = _RATED.match(pending)
        if m is not None:
            item = m["item"].strip()
            if not item:
                raise UserError(f"--rate: no item before ':{m['rating']}'")
            pairs.append((item, float(m["rating"])))
            pending = ""
        elif not pending.strip():
            pending = ""
    if pending.strip():
        item, sep, value = pending.rpartition(":")
        if not sep:
            raise UserError(f"--rate expects ITEM:RATING pairs separated by commas, got {pending.strip()!r}")
        raise UserError(f"--rate: rating {value.strip()!r} for item {item.strip()!r} is not a number")
    if not pairs:
        raise UserError("--rate is empty")
    return pairs


def _resolve_ratings(catalog: Catalog, pairs: list[tuple[str, float]]) -> dict:
    """Item ids for what the user typed (ids or titles); each item may be rated once."""
    ratings: dict = {}
    typed: dict = {}
    for ref, rating in pairs:
        try:
            item = catalog.resolve(ref)
        except UserError as exc:
            raise UserError(f"--rate: {exc}") from None
        if item in ratings:
            raise UserError(f"--rate: item {item} is rated twice (as {typed[item]!r} and {ref!r})")
        ratings[item], typed[item] = rating, ref
    return ratings


def _echo_rated(catalog: Catalog, ratings: dict) -> None:
    """The ratings as understood (id, title, rating), on stderr: stdout keeps only the results."""
    idx = catalog.item_map.index_array(list(ratings))
    ids = [str(item) for item in ratings]
    width = max(len(i) for i in ids)
    typer.echo("rated (as understood):", err=True)
    for item_id, i, rating in zip(ids, idx, ratings.values()):
        title = catalog.title(int(i)) or ""
        typer.echo(f"  {item_id:>{width}}  {rating:g}  {title}".rstrip(), err=True)


@app.command()
@cli_errors
def info(
    model: Annotated[Path, typer.Option("--model", help="Model directory from `ae recae train`.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")] = False,
) -> None:
    """What a saved model is: its registry entry, data shape, the settings it was trained with and,
    when they were chosen on validation, the search (every candidate, the bias baseline, the choice).

    Example: ae recae info --model models/autorec
    """
    from recae.recommender import AutoencoderRecommender

    setup_logging(True)
    rec = AutoencoderRecommender.load(model, device="cpu")
    doc = {"model": rec.model, "params": rec.get_params(), "users": len(rec.user_map_), "items": len(rec.item_map_),
           "ratings": int(rec.train_.nnz), "scale": list(rec.scale_), "settings": rec.settings_,
           "blend_weight": rec.blend_weight_,
           "selection": rec.selection_.to_dict() if rec.selection_ is not None else None,
           "stack": rec.stack_.to_dict() if getattr(rec, "stack_", None) is not None else None}
    if as_json:
        typer.echo(json.dumps(doc, indent=2))
        return
    typer.echo(f"{rec.model}: {doc['users']} users × {doc['items']} items, {doc['ratings']} ratings, "
               f"scale {rec.scale_[0]:g}-{rec.scale_[1]:g}")
    if rec.settings_ is not None:
        typer.echo("trained with " + _settings_text(rec.settings_))
    if doc["stack"] is not None:
        _echo_selection(rec)
        return
    if rec.selection_ is None:
        typer.echo("settings not chosen on validation (trained --no-tune, pinned, or saved before the search)")
        return
    _echo_selection(rec)


@app.command()
@cli_errors
def items(
    model: Annotated[Path, typer.Option("--model", help="Model directory from `ae recae train`.")],
    search: Annotated[str | None, typer.Option("--search", "-s", help="Text the title must contain (case "
                                               "ignored; \"godfather, the\" and \"the godfather\" both match). "
                                               "Without it: the most rated items.")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="Show at most this many items.")] = 20,
) -> None:
    """Find items by title: id, title and popularity (ratings in training), exact titles first, then the
    most rated. Use the id or the title with `recommend --rate`.

    No match prints a note on stderr and exits 0 (nothing found is an answer, not an error); a model
    without titles exits 2.

    Example: ae recae items --model models/autorec --search "star wars" --limit 5
    """
    from recae.recommender import AutoencoderRecommender

    setup_logging(True)
    catalog = AutoencoderRecommender.load(model, device="cpu").catalog()
    found, total = catalog.search(search, limit)
    if search is not None and search.strip() and total == 0:
        typer.echo(f"no item title contains {search.strip()!r} (of {len(catalog.item_map)} items)", err=True)
        return
    what = f"matching {search.strip()!r}" if search is not None and search.strip() else "by popularity"
    cols = ["item", "title", "popularity"] if catalog.has_titles else ["item", "popularity"]
    echo_table(f"{len(found)} of {total} items {what}", cols, found[cols].values.tolist())


@app.command()
@cli_errors
def recommend(
    model: Annotated[Path, typer.Option("--model", help="Model directory from `ae recae train`.")],
    user: Annotated[str | None, typer.Option("--user", help="A user id from the training data.")] = None,
    rate: Annotated[str | None, typer.Option(
        "--rate", help="A new user's ratings (fold-in, no retraining): ITEM:RATING pairs separated by commas, ITEM "
        "an item id or a title (exact, else a unique part of one; the rating follows the last ':'), e.g. "
        "\"50:5,Fargo (1996):4,toy story:3\". Find titles with `ae recae items --search`.")] = None,
    k: Annotated[int, typer.Option("-k", "--k", help="How many recommendations.")] = 10,
    device: DeviceOpt = "auto",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Do not echo the --rate ratings as understood "
                                        "(stderr).")] = False,
) -> None:
    """Top-k unseen items for a known user, or for a new user from a few ratings, with titles.

    Columns: rank, item, title (when the model has titles), score. `score` is what `ae recae score`
    writes too: higher is better; for explicit models (course, autorec, deeprec) it is the predicted
    rating on the training scale, for implicit ones (multdae, multvae) a preference score. With --rate
    the ratings as understood (id, rating, title) are echoed to stderr first.

    Example: ae recae recommend --model models/autorec --user 196 -k 10

    Example: ae recae recommend --model models/autorec --rate "Star Wars (1977):5,Fargo (1996):4"
    """
    from recae.recommender import AutoencoderRecommender

    setup_logging(True)
    if (user is None) == (rate is None):
        raise UserError("give exactly one of --user or --rate")
    rec = AutoencoderRecommender.load(model, device=device)
    catalog = rec.catalog()
    if user is not None:
        table = rec.recommend(_maybe_int(user), k)
        who = f"user {user}"
    else:
        ratings = _resolve_ratings(catalog, _parse_rate(rate))
        table = rec.fold_in(ratings, k)
        if not quiet:
            _echo_rated(catalog, ratings)
        who = "a new user (fold-in)"
    if catalog.has_titles:
        idx = catalog.item_map.index_array(table["item"].to_numpy(dtype=object))
        table.insert(2, "title", [catalog.title(int(i)) for i in idx])
    echo_table(f"Top {k} for {who} ({rec.model})", list(table.columns), table.values.tolist())


def _maybe_int(s: str):  # noqa: ANN202
    try:
        return int(s)
    except ValueError:
        return s


@app.command()
@cli_errors
def score(
    model: Annotated[Path, typer.Option("--model", help="Model directory from `ae recae train`.")],
    out: Annotated[Path, typer.Option("--out", help="Output file: .parquet or .csv (written atomically); with "
                                                     "--engine ray, a folder of Parquet shards.")],
    k: Annotated[int, typer.Option("-k", "--k", help="Recommendations per user.")] = 20,
    users: Annotated[Path | None, typer.Option("--users", help="Text file with one user id per line "
                                               "(default: every user).")] = None,
    skip_existing: Annotated[bool, typer.Option("--skip-existing", help="Do nothing if the same model and inputs "
                                                "already produced --out.")] = False,
    batch_users: Annotated[int, typer.Option("--batch-users", min=1, help="Users scored at a time (bounds memory: "
                                             "a batch holds users x items floats); with --engine ray, one "
                                             "unit of work and one shard.")] = 1024,
    device: DeviceOpt = "auto",
    engine: EngineOpt = "local",
    address: AddressOpt = None,
    workers: WorkersOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Batch top-k for all (or the listed) users, plus OUT.manifest.json. Exit 3 if some users were unknown
    (each is in the manifest's `rejected`, with its line in --users as `row`).

    Columns: user, item, rank, score (as `recommend`: higher is better; the predicted rating for
    explicit models, a preference score for implicit ones).

    With --engine ray, blocks of users are scored by Ray workers that each load the model once, and
    OUT is a folder of Parquet shards with the same rows (the manifest lists the shards); the model
    directory must be readable at the same path on every node.

    Example: ae recae score --model models/autorec --out recs.parquet -k 20

    Example (Ray): ae recae score --model models/autorec --out recs/ --engine ray --workers 2
    """
    from core.artifact import directory_hash
    from core.engines import check_engine
    from core.jobs.hashing import file_digest
    from core.jobs.manifest import is_up_to_date, manifest_path_for
    from recae.scoring import score_all, score_params

    setup_logging(quiet)
    check_engine(engine, address, workers)
    if skip_existing:
        inputs = [] if users is None else [{"path": str(users), "sha256": file_digest(users)}]
        if is_up_to_date(manifest_path_for(out), directory_hash(model), inputs, score_params(k, engine)):
            typer.echo(f"{out} is up to date; nothing to do")
            return
    manifest = score_all(model, out, k, users, batch_users=batch_users, device=device, progress=not quiet,
                         engine=engine, address=address, workers=workers)
    where = f" on {manifest.engine['workers']} Ray workers ({len(manifest.shards)} shards)" if manifest.engine else ""
    typer.echo(f"scored {manifest.rows_in - len(manifest.rejected)} users -> {manifest.rows_out} rows{where} in "
               f"{manifest.duration_s:.2f} s; wrote {out} and {manifest_path_for(out)}")
    if manifest.rejected:
        typer.echo(f"warning: {len(manifest.rejected)} user(s) rejected (see the manifest)", err=True)
        raise typer.Exit(EXIT_PARTIAL)
