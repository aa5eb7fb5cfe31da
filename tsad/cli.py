"""`ae tsad`: train, detect, evaluate, monitor and batch-score with the window anomaly detector."""

from __future__ import annotations

import time
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from core.corruption import CORRUPTIONS
from core.errors import UserError
from core.jobs.cli_support import (
    AddressOpt,
    DeviceOpt,
    EngineOpt,
    QuietOpt,
    SeedOpt,
    ThreadsOpt,
    VerboseOpt,
    WorkersOpt,
    choice_enum,
    cli_errors,
    echo_table,
    setup_logging,
)
from tsad.alerting import MODES as ALERTING_MODES
from tsad.config import BENCHMARKS, PRESETS, THRESHOLD_RULES, DetectorConfig, preset
from tsad.ingest import DEFAULT_DUPLICATES, DUPLICATES
from tsad.variants import VARIANTS

app = typer.Typer(help="Sliding-window autoencoder anomaly detector for time series.", no_args_is_help=True)

TimeColOpt = Annotated[str | None, typer.Option("--time-col", help="Timestamp column (default: a column named "
                                                "timestamp/datetime/time/date, or none).")]
ValueColsOpt = Annotated[str | None, typer.Option("--value-cols", help="Comma-separated numeric columns "
                                                  "(default: every numeric column).")]


DuplicatesChoice = choice_enum("DuplicatesChoice", DUPLICATES)
# shared by every command that reads timestamped rows (the monitor too): one policy, one default
DuplicatesOpt = Annotated[DuplicatesChoice, typer.Option(
    "--duplicates", help="Rows that repeat a timestamp: first keeps the first (default: causal, so a row is final "
    "when it arrives and batch, stream and resumed runs agree), last keeps the last (held back until a later "
    "timestamp arrives), drop keeps none, error refuses the input. Rows left out are listed with their line and "
    "the line they repeat.")]


ModelChoice = choice_enum("ModelChoice", VARIANTS)
DenoiseChoice = choice_enum("DenoiseChoice", CORRUPTIONS)
ThresholdChoice = choice_enum("ThresholdChoice", THRESHOLD_RULES)
LOG_BENCHMARKS = ("bgl",)  # log benchmarks: their own protocol (tsad.logbench), no detector preset
BenchmarkChoice = choice_enum("BenchmarkChoice", (*BENCHMARKS, *LOG_BENCHMARKS))
PresetChoice = choice_enum("PresetChoice", tuple(PRESETS))
AlertingChoice = choice_enum("AlertingChoice", ALERTING_MODES)
_VARIANT_HELP = "; ".join(f"{v.name} ({v.help})" for v in VARIANTS.values())


AdaptOpt = Annotated[bool, typer.Option(
    "--adapt", help="Keep learning as rows arrive: every N rows (the model's adapt settings, `train --adapt-every`), "
    "a few gradient steps on the recent rows judged normal, so drift stops raising the errors. Deterministic for "
    "the model's seed; the adapted weights are kept in --state (safetensors).")]

EnsembleOpt = Annotated[int | None, typer.Option(
    "--ensemble", help="Train N networks apart (seeds seed … seed+N−1) and average their errors: a score that leans "
    "less on one training run's luck, for N times the training and scoring work. Default 1 (a --preset keeps "
    "its own); not with --adapt.")]


def _value(choice: Enum | str | None) -> str | None:
    return choice.value if isinstance(choice, Enum) else choice


def _cols(value_cols: str | None) -> list[str] | None:
    return [c.strip() for c in value_cols.split(",") if c.strip()] if value_cols else None


def _load(data: Path, time_col: str | None, value_cols: list[str] | None, duplicates: str,
          label_col: str | None = None):  # noqa: ANN202 - a tsad.datasets.Series (imported lazily)
    """A whole table as a Series (training data, a labelled file), the duplicates policy applied first."""
    from core.jobs.tables import read_table
    from tsad.datasets import TIME_NAMES, frame_to_series
    from tsad.ingest import resolve_repeats

    frame = read_table(data, "data file")
    when = time_col or next((c for c in frame.columns if str(c).strip().lower() in TIME_NAMES), None)
    if when in frame.columns:
        csv = data.suffix.lower() not in (".parquet", ".pq")
        frame = resolve_repeats(frame, when, duplicates, data.name, 2 if csv else 1, "line" if csv else "row")
    return frame_to_series(frame, data.name, time_col, value_cols, label_col)


@app.command()
@cli_errors
def train(
    data: Annotated[Path, typer.Option("--data", help="Normal (training) data: CSV or Parquet.")],
    out: Annotated[Path, typer.Option("--out", help="Model directory to write.")],
    time_col: TimeColOpt = None,
    value_cols: ValueColsOpt = None,
    preset_name: Annotated[PresetChoice | None, typer.Option(
        "--preset", help="Start from a benchmark's settings (alerting included): what `evaluate --benchmark` "
        "measures; the options below override them.")] = None,
    window: Annotated[int | None, typer.Option("--window", help="Window length in rows. Default 288.")] = None,
    stride: Annotated[int | None, typer.Option("--stride", help="Step between training windows. Default 1.")] = None,
    model: Annotated[ModelChoice | None, typer.Option("--model", help="Network variant: " + _VARIANT_HELP +
                                                      ". Default conv.")] = None,
    denoise: Annotated[DenoiseChoice | None, typer.Option("--denoise", help="Train as a denoising AE with this "
                                                          "corruption.")] = None,
    noise_level: Annotated[float | None, typer.Option("--noise-level", help="With --denoise: the corruption's "
                                                      "strength (gaussian: std in scaled units; mask/dropout: the "
                                                      "fraction of values hidden). Default 0.1.")] = None,
    center: Annotated[bool | None, typer.Option(
        "--center/--no-center", help="Show the network each window minus its mean (per channel), added back to "
        "its reconstruction: it judges the shape, not the level, so a slow drift of the level raises no alerts "
        "(a level shift alerts while its step is inside a window, then becomes the new normal: use --no-center "
        "when a level itself is the anomaly). Default on; the presets keep it off.")] = None,
    epochs: Annotated[int | None, typer.Option("--epochs", help="Maximum training epochs (early stopping on). "
                                               "Default 50.")] = None,
    ensemble: EnsembleOpt = None,
    threshold: Annotated[ThresholdChoice | None, typer.Option(
        "--threshold", help="max (largest training error; the default), percentile (--threshold-q), contamination "
        "(--contamination) or pot (extreme value, --risk).")] = None,
    threshold_q: Annotated[float | None, typer.Option(
        "--threshold-q", help="With --threshold percentile: the percentile of training scores, in (0, 100]. "
        "Default 99.")] = None,
    contamination: Annotated[float | None, typer.Option("--contamination", help="With --threshold contamination: "
                                                        "the fraction of training windows expected above the "
                                                        "threshold, in (0, 0.5). Default 0.01.")] = None,
    risk: Annotated[float | None, typer.Option("--risk", help="With --threshold pot: the probability of a normal "
                                               "score exceeding the threshold, in (0, 0.1). Default 0.001.")] = None,
    margin: Annotated[float | None, typer.Option("--margin", help="Multiply the fitted threshold by this (> 0), for "
                                                 "any rule. Default 1.")] = None,
    alerting: Annotated[AlertingChoice | None, typer.Option(
        "--alerting", help="How scores become alerts, saved with the model and applied by detect, score, monitor "
        "and evaluate alike: spot (streaming extreme-value tail of the errors, updated as data arrives; "
        "--spot-risk; the default), threshold (the fixed --threshold) or adaptive (the error's rolling "
        "likelihood and onsets, follows drift; --level-check, --cutoff).")] = None,
    level_check: Annotated[bool | None, typer.Option(
        "--level-check/--no-level-check", help="With --alerting adaptive: also alert on shifts of the values' "
        "level (rolling z-score).")] = None,
    cutoff: Annotated[float | None, typer.Option("--cutoff", help="With --alerting adaptive: alert when the "
                                                 "squashed likelihood reaches this, in (0, 1). Default 0.5.")] = None,
    spot_risk: Annotated[float | None, typer.Option("--spot-risk", help="With --alerting spot: the probability of a "
                                                    "normal error above the alert level on a row, in (0, 0.1): about "
                                                    "one false alert per 1/risk rows. Default 1e-5.")] = None,
    adapt_every: Annotated[int | None, typer.Option(
        "--adapt-every", help="For `score`/`monitor --adapt`: rows between adaptation rounds. Default 100.")] = None,
    adapt_steps: Annotated[int | None, typer.Option(
        "--adapt-steps", help="For --adapt: gradient steps per round (Adam, 32 windows each). Default 5.")] = None,
    adapt_lr: Annotated[float | None, typer.Option(
        "--adapt-lr", help="For --adapt: the learning rate of those steps. Default 1e-3.")] = None,
    smooth: Annotated[int | None, typer.Option("--smooth", help="Average each score over the last N rows (causal): "
                                               "favours lasting deviations over one-row spikes. Default 1 (a "
                                               "--preset keeps its own).")] = None,
    score_columns: Annotated[str | None, typer.Option(
        "--score-columns", help="Comma-separated value columns whose reconstruction errors make the score (the "
        "network still reads and reconstructs every column). Leave out a column that drifts past its training "
        "range without being the anomaly (SKAB's temperatures). Default: all (a --preset keeps its own).")] = None,
    duplicates: DuplicatesOpt = DEFAULT_DUPLICATES,
    data_format: Annotated[str, typer.Option(
        "--format", help="table (CSV or Parquet; the default) or log (a raw log file: --log-format; lines are "
        "parsed, templates mined, and the detector learns the template counts per --bucket or --lines).")] = "table",
    log_format: Annotated[str | None, typer.Option(
        "--log-format", help="With --format log: openssh, syslog, linux, bgl, thunderbird, hdfs, apache or jsonl "
        "(fields time, level, message). Default syslog.")] = None,
    log_regex: Annotated[str | None, typer.Option(
        "--log-regex", help="With --format log: a Python regex matching a whole line, with a named group "
        "'content' and optional 'time' and 'level' (replaces --log-format).")] = None,
    bucket: Annotated[str | None, typer.Option(
        "--bucket", help="With --format log: count lines per time bucket, a pandas offset such as 30s, 1min "
        "(the default), 1h.")] = None,
    lines: Annotated[int | None, typer.Option(
        "--lines", help="With --format log: count per window of N consecutive lines instead of time buckets "
        "(logs without timestamps).")] = None,
    top_templates: Annotated[int, typer.Option(
        "--top-templates", help="With --format log: the K most frequent training templates get their own count "
        "column; the rest (and templates never seen) count as 'other'.")] = 50,
    device: DeviceOpt = "auto",
    seed: SeedOpt = 0,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
    workers: Annotated[int, typer.Option(
        "--workers", help="Train data-parallel (torch DDP through Ray Train) on N workers, same global batch and "
        "seed; needs the `ray` extra (pip install \"ae-toolkit\\[ray]\"); uses the Ray cluster in RAY_ADDRESS, else "
        "starts a local one. Every network variant (all train with mini-batch Adam).")] = 1,
) -> None:
    """Train a detector on normal data and save it with its scaler and threshold.

    With --format log the model directory also holds the log front end (parser settings, mined
    templates, vocabulary, as plain JSON); its detector defaults suit count rows (a window of 4
    rows, a small dense network, 40 epochs); the options below override them. Lines that do not
    match the format are reported on stderr and skipped.

    Examples: ae tsad train --data art_daily_small_noise.csv --window 288 --out models/daily

    ae tsad train --format log --log-format openssh --bucket 1min --data sshd.log --out models/sshd
    """
    from tsad.detector import WindowDetector

    setup_logging(quiet, verbose)
    if data_format not in ("table", "csv", "log"):
        raise UserError(f"unknown --format {data_format!r}; choose table or log")
    is_log = data_format == "log"
    if not is_log:
        given = [name for name, value in (("--log-format", log_format), ("--log-regex", log_regex),
                                          ("--bucket", bucket), ("--lines", lines)) if value is not None]
        if given:
            raise UserError(f"{', '.join(given)} appl{'ies' if len(given) == 1 else 'y'} with --format log")
    elif time_col is not None or value_cols is not None or score_columns is not None:
        raise UserError("--time-col, --value-cols and --score-columns apply to tables, not --format log")
    if preset_name is not None:
        base = preset(_value(preset_name))
    elif is_log:
        from tsad.logmodel import log_detector_config

        base = log_detector_config()
    else:
        base = DetectorConfig()
    rule = _value(threshold) or base.threshold.rule
    mode = _value(alerting) or base.alerting.mode
    for option, value, needs, chosen in (
            ("--threshold-q", threshold_q, "percentile", rule),
            ("--contamination", contamination, "contamination", rule),
            ("--risk", risk, "pot", rule), ("--level-check", level_check, "adaptive", mode),
            ("--cutoff", cutoff, "adaptive", mode), ("--spot-risk", spot_risk, "spot", mode)):
        if value is not None and chosen != needs:
            flag = "--threshold" if option in ("--threshold-q", "--contamination", "--risk") else "--alerting"
            raise UserError(f"{option} applies to {flag} {needs}, not {chosen}")
    if noise_level is not None and denoise is None and base.network.denoise is None:
        raise UserError("--noise-level applies with --denoise")
    config = base.updated({
        "window": window, "stride": stride, "network.kind": _value(model), "network.denoise": _value(denoise),
        "network.noise_level": noise_level, "network.center": center, "network.ensemble": ensemble,
        "training.epochs": epochs, "threshold.rule": rule,
        "threshold.q": threshold_q, "threshold.contamination": contamination, "threshold.risk": risk,
        "threshold.margin": margin, "scoring.smooth": smooth, "alerting.mode": mode, "alerting.level": level_check,
        "alerting.cutoff": cutoff, "alerting.risk": spot_risk, "training.workers": workers,
        "adapt.every": adapt_every, "adapt.steps": adapt_steps, "adapt.lr": adapt_lr})
    config.validate()  # before reading the data (an unsupported --workers or a missing `ray` too)
    if is_log:
        _train_log(data, out, config, log_format, log_regex, bucket, lines, top_templates, seed, device, quiet)
        return
    series = _load(data, time_col, _cols(value_cols), _value(duplicates))
    if score_columns is not None:
        config = config.updated({"scoring.score_channels": _channel_indices(_cols(score_columns) or [],
                                                                             series.channels)})
    det = WindowDetector(config, seed=seed, device=device, progress=not quiet)
    det.fit(series, time_col=time_col or (series.timestamps.name if series.timestamps is not None else None))
    det.save(out, metrics={"train": {**det.train_stats_, **({"workers": workers} if workers > 1 else {})}})
    typer.echo(f"trained on {len(series)} rows x {len(series.channels)} channel(s) ({', '.join(series.channels)}); "
               f"threshold {det.threshold_.threshold_:.5g}; saved {out}")


def _channel_indices(names: list[str], channels: list[str]) -> list[int]:
    """Positions of the named value columns (--score-columns), each once, in the data's order."""
    unknown = [n for n in names if n not in channels]
    if unknown or not names:
        raise UserError(f"--score-columns: {', '.join(unknown) or 'no column given'}; the value columns are "
                        f"{', '.join(channels)}")
    return sorted({channels.index(n) for n in names})


def _train_log(data: Path, out: Path, config: DetectorConfig, log_format: str | None, log_regex: str | None,
               bucket: str | None, lines: int | None, top_k: int, seed: int, device: str, quiet: bool) -> None:
    from tsad.logfeatures import check_spec
    from tsad.logmodel import ParserSettings, failure_text, train_log_model

    settings = ParserSettings.create(log_format or "syslog", log_regex)
    if bucket is not None or lines is not None:
        check_spec(bucket, lines)
    if not 1 <= top_k <= 100_000:
        raise UserError("--top-templates must be between 1 and 100000")
    trained = train_log_model(data, settings, config, bucket=bucket, lines=lines, top_k=top_k, seed=seed,
                              device=device, progress=not quiet)
    if trained.report.failed:
        typer.echo(f"warning: {failure_text(trained.report, str(data))}; skipped", err=True)
    m = trained.model
    m.save(out, metrics={"train": m.detector.train_stats_})
    typer.echo(f"trained on {trained.report.parsed} log lines ({settings.format}): {trained.templates} templates, "
               f"{len(m.vocab.templates)} in the vocabulary, {trained.rows} rows of {m.vocab.span} x "
               f"{len(m.vocab.columns)} columns; threshold {m.detector.threshold_.threshold_:.5g}; saved {out}")


def _detect_log(model: Path, data: Path, out: Path, plot: Path | None, mode: str, device: str) -> None:
    from core.jobs.tables import check_outputs_apart, write_table
    from tsad.logmodel import LogModel, detect_log, failure_text

    if plot is not None or mode != "causal":
        raise UserError("--plot and --mode offline do not apply to log models")
    m = LogModel.load(model, device=device)
    check_outputs_apart([out], [data])
    found = detect_log(m, data)
    write_table(found.frame, out)
    n_alert = int(found.frame["is_anomaly"].sum())
    typer.echo(f"scored {found.report.parsed} log lines in {len(found.frame)} rows of {m.vocab.span}; {n_alert} "
               f"anomalous; wrote {out}")
    if found.report.failed:
        typer.echo(f"warning: {failure_text(found.report, str(data))}; skipped", err=True)
    if found.new_count:
        shown = "; ".join(f"line {n}: {c[:120]}" for n, c in found.new_events[:3])
        typer.echo(f"note: {found.new_count} line(s) match no training template (counted as 'other'): {shown}",
                   err=True)
    if found.dropped:
        typer.echo(f"note: {found.dropped} line(s) without a timestamp before the first timed one were not counted",
                   err=True)


@app.command()
@cli_errors
def detect(
    model: Annotated[Path, typer.Option("--model", help="Model directory from `ae tsad train`.")],
    data: Annotated[Path, typer.Option("--data", help="Series to score: CSV or Parquet with the model's columns.")],
    out: Annotated[Path, typer.Option("--out", help="Scores file (.csv or .parquet).")],
    plot: Annotated[Path | None, typer.Option("--plot", help="Also write a PNG of series, score and alerts.")] = None,
    mode: Annotated[str, typer.Option("--mode", help="causal (uses only the past; as a live monitor would) or "
                                      "offline (every window covering a point).")] = "causal",
    duplicates: DuplicatesOpt = DEFAULT_DUPLICATES,
    device: DeviceOpt = "auto",
    threads: ThreadsOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Score every timestamp and flag anomalies; writes timestamp, values, score, score_prob, is_anomaly.

    Rows with bad numbers or timestamps, or out of time order, are left out with a warning naming
    their lines (exit 3); in causal mode the rows and scores are those of `score` and `monitor`.

    A log model (`train --format log`) reads a log file instead and writes one row per bucket or
    window of lines: time (bucket start, or the last line's time), first_line, last_line, lines,
    score, score_prob, is_anomaly, new_templates (lines matching no training template) and
    templates (for alerted rows: the templates above their usual count). Lines that do not parse
    are reported on stderr, never fatal.

    Examples: ae tsad detect --model models/daily --data art_daily_jumpsup.csv --out scores.csv --plot scores.png

    ae tsad detect --model models/sshd --data sshd-today.log --out sshd-scores.csv
    """
    from core.device import set_threads
    from core.jobs.cli_support import EXIT_PARTIAL
    from core.jobs.tables import check_outputs_apart, write_table
    from tsad.batch import detect_file, scores_frame
    from tsad.detector import WindowDetector
    from tsad.ingest import describe
    from tsad.logmodel import is_log_model

    setup_logging(quiet)
    set_threads(threads)
    if is_log_model(model):
        _detect_log(model, data, out, plot, mode, device)
        return
    det = WindowDetector.load(model, device=device)
    check_outputs_apart([out, plot], [data])
    found = detect_file(det, data, mode, _value(duplicates))
    if plot is not None:
        from tsad.plots import plot_scores

        plot_scores(found.series, found.scores, det.threshold_.threshold_, plot)
    write_table(scores_frame(found.series, found.scores), out)
    n_alert = int(found.scores.is_anomaly.sum())
    typer.echo(f"scored {len(found.series)} rows ({found.scores.points_per_second:,.0f} points/s); {n_alert} "
               f"anomalous; wrote {out}" + (f" and {plot}" if plot else ""))
    if found.rejected:
        typer.echo(f"warning: {describe(found.rejected)}; not in {out}", err=True)
        raise typer.Exit(EXIT_PARTIAL)


@app.command()
@cli_errors
def evaluate(
    benchmark: Annotated[BenchmarkChoice | None, typer.Option("--benchmark", help="A benchmark protocol with its "
                                                              "preset (data from AE_DATA_DIR).")] = None,
    data: Annotated[Path | None, typer.Option("--data", help="Your own labelled file instead of a benchmark.")] = None,
    labels: Annotated[str, typer.Option("--labels", help="With --data: the 0/1 label column.")] = "label",
    train_rows: Annotated[int, typer.Option("--train-rows", help="With --data: rows used for training.")] = 400,
    out: Annotated[Path | None, typer.Option(
        "--out", help="Folder for per-file score CSVs: NAB's layout for nab; one CSV per test file for skab and "
        "msl (timestamp, values, score, is_anomaly, label).")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the metrics as JSON.")] = None,
    limit: Annotated[int | None, typer.Option("--limit", help="Only the first N files (quick checks).")] = None,
    window: Annotated[int | None, typer.Option("--window", help="Window length (default per benchmark).")] = None,
    epochs: Annotated[int | None, typer.Option("--epochs", help="Epochs per file (default per benchmark).")] = None,
    ensemble: EnsembleOpt = None,
    model: Annotated[ModelChoice, typer.Option("--model", help="Network variant: " + _VARIANT_HELP + ".")] = "conv",
    duplicates: Annotated[DuplicatesChoice, typer.Option(
        "--duplicates", help="With --data: rows that repeat a timestamp (first, last, drop or error; see `train "
        "--help`). Benchmarks keep their rows as published, so their labels and scores line up.")
    ] = DEFAULT_DUPLICATES,
    adapt: Annotated[bool, typer.Option("--adapt", help="Score every test file with online adaptation (as "
                                        "`score`/`monitor --adapt`): each row seen once, in order.")] = False,
    device: DeviceOpt = "auto",
    seed: SeedOpt = 0,
    quiet: QuietOpt = False,
) -> None:
    """Run a benchmark protocol end to end and print our metrics beside baselines from the same run.

    Example: ae tsad evaluate --benchmark nab --out nab_scores --json nab.json

    Example: ae tsad evaluate --benchmark bgl --json bgl.json  (BGL_2k logs, the loglizer protocol)
    """
    from tsad import evaluate as E

    setup_logging(quiet)
    if (benchmark is None) == (data is None):
        raise UserError("give exactly one of --benchmark or --data")
    if limit is not None and limit < 1:
        raise UserError("--limit must be at least 1")
    name = _value(benchmark) or "file"
    if name in LOG_BENCHMARKS:
        if adapt:
            raise UserError("--adapt applies to numeric series, not the log benchmark")
        given = [flag for flag, value in (("--window", window), ("--epochs", epochs), ("--ensemble", ensemble))
                 if value is not None]
        if given:
            raise UserError(f"{', '.join(given)}: the log benchmark chooses its detector on validation "
                            "(bench/logs_bgl.py); these apply to numeric benchmarks")
        _evaluate_logs(name, seed, device, json_out, quiet)
        return
    config = preset(name).updated({"window": window, "training.epochs": epochs, "network.kind": _value(model),
                                   "network.ensemble": ensemble})
    config.validate()  # before any long work (run_benchmark and evaluate_labelled_file refuse --adapt with
    # an ensemble before training)
    if benchmark is not None:
        result = E.run_benchmark(name, config, seed=seed, device=device, out=out, limit=limit, progress=not quiet,
                                 adapt=adapt)
    else:
        series = _load(data, None, None, _value(duplicates), label_col=labels)
        if series.labels is None:
            raise UserError(f"{data}: no label column {labels!r}")
        result = E.evaluate_labelled_file(series, train_rows, config, seed=seed, device=device, adapt=adapt)
    columns, rows = E.result_rows(result)
    echo_table(f"{result.benchmark}: {result.model} autoencoder vs baselines (same run, {result.seconds:.0f} s)",
               columns, rows)
    typer.echo(f"scoring throughput: {result.metrics.get('points_per_second', 0):,.0f} points/s (batch mode)")
    tuning, whole = result.extra.get("tuning", {}), result.extra.get("metrics_all", {})
    if "metrics_all_own_threshold" in result.extra:  # NAB: the table is the evaluation half; say what the corpus scores
        typer.echo(f"the table: the evaluation half ({tuning['evaluation_files']} files) at thresholds chosen on the "
                   f"tuning half ({tuning['files']} files); whole corpus at the same thresholds: standard "
                   f"{whole['nab_standard']}, at its own optimum (NAB's convention): "
                   f"{result.extra['metrics_all_own_threshold']['nab_standard']}")
    elif "evaluation_files" in tuning:  # SKAB, MSL: the same, point metrics
        typer.echo(f"the table: the evaluation part ({tuning['evaluation_files']} files; the preset's settings were "
                   f"chosen on the tuning part, {tuning['files']} files); whole corpus: F1 {whole.get('f1')}")
    if "far_whole_file" in result.metrics:
        typer.echo("f1/far/mar count the test rows; the *_whole_file columns count every row of each file, its "
                   "training rows too (SKAB's leaderboard convention): "
                   f"F1 {result.metrics['f1_whole_file']}, FAR {result.metrics['far_whole_file']}")
    blame = result.extra.get("false_alarm_channels") or {}
    if blame:
        top = ", ".join(f"{name} {share:.0%}" for name, share in list(blame.items())[:4])
        typer.echo(f"false alarms by channel (mean share of the score on flagged normal test rows): {top}; "
                   "a channel that drifts without being the anomaly can be left out with train --score-columns")
    if json_out is not None:
        E.write_json(result, json_out)
        typer.echo(f"wrote {json_out}")


def _evaluate_logs(name: str, seed: int, device: str, json_out: Path | None, quiet: bool) -> None:
    """BGL_2k by the loglizer protocol (tsad.logbench): windows of 20 lines, a chronological 80/20
    split, thresholds and the autoencoder's setting chosen on the training part's tail; the
    autoencoder and IsolationForest are the median of seeds SEED, SEED+1, SEED+2."""
    from data.registry import ensure_dataset
    from tsad import evaluate as E
    from tsad.logbench import evaluate_bgl

    t0 = time.perf_counter()
    doc = evaluate_bgl(ensure_dataset("loghub"), seeds=(seed, seed + 1, seed + 2), device=device)
    numeric = ("precision", "recall", "f1", "pr_auc", "roc_auc", "vus_pr")
    detectors = {k: {m: v[m] for m in numeric if m in v} for k, v in doc["detectors"].items()}
    ours = detectors.pop("autoencoder")
    # one shape with the other benchmarks: BGL_2k has a single test part, so the corpus figures are its
    result = E.EvalResult(name, f"log count autoencoder ({doc['ae_chosen']})", ours, detectors,
                          time.perf_counter() - t0,
                          {"metrics_all": dict(ours), "baselines_all": {k: dict(v) for k, v in detectors.items()},
                           "protocol": doc["protocol"], "settings": doc["settings"], "data": doc["data"],
                           "tuning": {"part": "the last quarter of the training windows", "ae_grid": doc["ae_grid"],
                                      "ae_chosen": doc["ae_chosen"]}})
    columns, rows = E.result_rows(result)
    echo_table(f"{name}: windows of {doc['settings']['window_lines']} lines, {doc['data']['test_windows']} test "
               f"windows ({doc['data']['anomalous_test']} anomalous); autoencoder vs baselines (same run, "
               f"{result.seconds:.0f} s)", columns, rows)
    if json_out is not None:
        E.write_json(result, json_out)
        typer.echo(f"wrote {json_out}")


@app.command()
@cli_errors
def monitor(
    model: Annotated[Path, typer.Option("--model", help="Model directory from `ae tsad train`.")],
    input_path: Annotated[str, typer.Option("--input", help="A file to read (or - for stdin).")] = "-",
    follow: Annotated[bool, typer.Option("--follow", help="Keep reading as the file grows, like tail -F "
                                         "(survives rotation and truncation).")] = False,
    fmt: Annotated[str, typer.Option("--format", help="csv, jsonl or log. A CSV stream may start without its header "
                                     "(tail -F prints the last lines only): its columns are then --columns. log: raw "
                                     "log lines for a model from `train --format log`; one JSON line per anomalous "
                                     "bucket/window naming its templates; --state and --metrics work too (see "
                                     "below); --columns, --duplicates, --batch, --max-delay, --cooldown and --adapt "
                                     "do not apply (refused).")] = "csv",
    columns: Annotated[str | None, typer.Option("--columns", help="Column order of a CSV stream without a header "
                                                "line (default: the model's time column, then its channels, as "
                                                "`ae tsad train` read them). A header line, if one comes, is "
                                                "recognised and checked.")] = None,
    alerts: Annotated[str, typer.Option("--alerts", help="Where alerts go as JSON lines: a file or - (stdout); "
                                        "each line is flushed as it is written.")] = "-",
    emit_scores: Annotated[Path | None, typer.Option("--emit-scores", help="Also write one JSON line per record "
                                                     "(score, score_prob, is_anomaly) to this file.")] = None,
    state: Annotated[Path | None, typer.Option("--state", help="Checkpoint file: resume exactly where a previous "
                                               "run stopped.")] = None,
    cooldown: Annotated[int, typer.Option("--cooldown", help="Normal records that close an alert.")] = 10,
    checkpoint_every: Annotated[int, typer.Option("--checkpoint-every", help="Save state every N records "
                                                  "(with --format log: every N lines).")] = 1000,
    batch: Annotated[int, typer.Option("--batch", help="Score up to N waiting records together (throughput vs "
                                       "latency; a record never waits for more input).")] = 32,
    max_delay: Annotated[float, typer.Option("--max-delay", help="Longest a record waits for its batch to fill, "
                                             "in seconds.")] = 0.25,
    fsync: Annotated[bool, typer.Option("--fsync", help="Also fsync alert and score lines as they are written "
                                        "(durable across a power cut; slower).")] = False,
    metrics: Annotated[Path | None, typer.Option("--metrics", help="Rewrite this JSON file with records, rejects, "
                                                 "alerts, lag and records/s every --metrics-every seconds (a status "
                                                 "line also goes to stderr on SIGUSR1).")] = None,
    metrics_every: Annotated[float, typer.Option("--metrics-every", help="Seconds between --metrics updates.")] = 10.0,
    duplicates: DuplicatesOpt = DEFAULT_DUPLICATES,
    idle_timeout: Annotated[float | None, typer.Option("--idle-timeout", help="With --follow: stop after this many "
                                                       "seconds without new data.")] = None,
    adapt: AdaptOpt = False,
    device: Annotated[str, typer.Option("--device", help="Where the model runs (cpu is fastest for one "
                                        "record at a time).")] = "cpu",
    threads: ThreadsOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Watch a stream: score each record causally and write one debounced JSON line per alert.

    Malformed records are logged to stderr with their line number and skipped; the monitor never
    stops on bad input. SIGINT/SIGTERM save the state and exit 0 within a second, even on an idle
    pipe. With --state, a restarted monitor resumes where it stopped; records at or before the
    checkpoint (a replayed stream) are skipped and counted once in the summary.

    With --format log a bucket is scored when the first line of a later bucket arrives (a window of
    lines at its last line), and the open one at the end of the input. With --state the open
    bucket/window stays open in the state (a resumed run continues it; an alert the end of the input
    wrote for it is cut from the --alerts file on resume and written again when the row closes). A
    resumed log monitor reads the same file on from where it stopped; another input whose first line
    is the first line the state counted is a replay of that stream: the lines the state covers are
    skipped (line counts, not timestamps: many log lines share one second); any other input is the
    continuation (every line new, line numbers going on).

    Examples: tail -F metrics.csv | ae tsad monitor --model models/daily --alerts alerts.jsonl --state mon.state

    tail -F /var/log/auth.log | ae tsad monitor --model models/sshd --format log --alerts alerts.jsonl
    """
    from core.device import set_threads
    from tsad.logmodel import is_log_model
    from tsad.monitor import Monitor

    setup_logging(quiet)
    threads = set_threads(threads, default=1)
    if fmt == "log" or is_log_model(model):
        if fmt != "log":
            raise UserError(f"{model} is a log model: monitor it with --format log")
        if not is_log_model(model):
            raise UserError(f"{model} is not a log model (train one with `ae tsad train --format log`)")
        # a log row alerts on its own (no debouncing) and lines are not records: refuse what would be ignored
        given = [name for name, value, default in (
            ("--columns", columns, None), ("--duplicates", _value(duplicates), DEFAULT_DUPLICATES),
            ("--batch", batch, 32), ("--max-delay", max_delay, 0.25), ("--cooldown", cooldown, 10),
            ("--adapt", adapt, False)) if value != default]
        if given:
            raise UserError(f"{', '.join(given)} do{'es' if len(given) == 1 else ''} not apply to --format log")
        from tsad.logmodel import LogMonitor

        mon = LogMonitor(model, input_path, alerts, str(emit_scores) if emit_scores else None, follow,
                         idle_timeout, device=device, fsync=fsync, state_path=state,
                         checkpoint_every=checkpoint_every, metrics=metrics, metrics_every=metrics_every)
        typer.echo(mon.run().summary(), err=True)
        return
    mon = Monitor(model, input_path, fmt, alerts, str(emit_scores) if emit_scores else None, state, follow,
                  cooldown, checkpoint_every, batch, idle_timeout=idle_timeout, device=device, threads=threads,
                  duplicates=_value(duplicates), columns=_cols(columns), fsync=fsync, max_delay=max_delay,
                  metrics=metrics, metrics_every=metrics_every, adapt=adapt)
    typer.echo(mon.run().summary(), err=True)


@app.command()
@cli_errors
def score(
    model: Annotated[Path, typer.Option("--model", help="Model directory from `ae tsad train`.")],
    inputs: Annotated[list[str], typer.Option("--input", help="A file, a folder or a glob of CSV/Parquet "
                                              "files (repeatable).")],
    out: Annotated[Path, typer.Option("--out", help="Output: .parquet or .csv (written atomically); with "
                                             "--engine ray, a folder of Parquet shards.")],
    series_col: Annotated[str | None, typer.Option("--series-col", help="Column that names the series when a "
                                                   "file holds several.")] = None,
    state: Annotated[Path | None, typer.Option("--state", help="Directory that carries each series' history "
                                               "(last rows, last timestamp, gap-fill values) from run to run, so "
                                               "a run's first rows are scored too and small scheduled files are "
                                               "scored fully; advanced only after --out is written.")] = None,
    series: Annotated[str, typer.Option("--series", help="With --state and no --series-col: the name the "
                                        "run's rows are kept under in the state (all inputs of a run continue "
                                        "that one series, in order).")] = "default",
    duplicates: DuplicatesOpt = DEFAULT_DUPLICATES,
    chunk_rows: Annotated[int, typer.Option("--chunk-rows", help="Rows read at a time (bounds memory).")] = 100_000,
    skip_existing: Annotated[bool, typer.Option("--skip-existing", help="Do nothing if the same model, inputs and "
                                                "options already produced --out.")] = False,
    manifest: Annotated[Path | None, typer.Option("--manifest", help="Run manifest path (default: "
                                                  "OUT.manifest.json).")] = None,
    device: DeviceOpt = "auto",
    threads: ThreadsOpt = None,
    engine: EngineOpt = "local",
    address: AddressOpt = None,
    workers: WorkersOpt = None,
    adapt: AdaptOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Scheduled batch scoring with a run manifest. Exit codes: 0 all scored, 1 failed, 2 bad arguments,
    3 finished but some inputs or rows were rejected (listed in the manifest).

    Rows with too little history (the window) are written without a score; the summary and the
    manifest say how many and why. With --state the history carries over: rows at or before a
    series' last scored timestamp are skipped as already scored (counted, not rejected).

    Example (cron, hourly; files of earlier hours are skipped as already scored):
    0 * * * * ae tsad score --model /models/daily --input '/data/in/*.csv' --out /data/scores.parquet
    --state /data/score.state

    With --engine ray, series are scored in parallel by Ray workers that each load the model once:
    one unit of work per file, or per series with --series-col or --state (the files are then read
    once here and split by series). OUT is a folder of Parquet shards with the same rows and scores.

    Example (Ray): ae tsad score --model models/plant --input 'sensors/*.csv' --out scores/ --engine ray

    With --adapt each series keeps learning from its rows judged normal (local engine only); with
    --state its adapted weights carry over to the next run, so a day's files scored run by run give
    the scores of one run over them all.

    Example (adapting): ae tsad score --model models/daily --input today.csv --out scores.parquet
    --state /data/score.state --adapt

    A log model (`train --format log`) reads log files instead (a folder: all its files), each its own
    stream, scored as `detect` scores one: one row per bucket or window of lines with a `source`
    column before detect's columns. Lines that do not match the log format are rejected with their
    line numbers in the manifest (exit 3). --state, --series-col and --engine ray do not apply to logs.

    Example (logs): ae tsad score --model models/sshd --input 'logs/*.log' --out scores.parquet
    """
    from core.device import set_threads
    from tsad.batch import ScoreOptions
    from tsad.logmodel import is_log_model
    from tsad.scorejob import EngineOptions, score_job

    setup_logging(quiet)
    set_threads(threads)
    if is_log_model(model):
        if adapt:
            raise UserError("--adapt applies to numeric series, not log models")
        _score_logs(model, inputs, out, state, series_col, engine, skip_existing, manifest, device, quiet)
        return
    options = ScoreOptions(series_col, chunk_rows, _value(duplicates), state, series, adapt)
    result, manifest_path = score_job(model, inputs, out, manifest_path=manifest, skip_existing=skip_existing,
                                      device=device, progress=not quiet, options=options,
                                      engine=EngineOptions(engine, address, workers))
    if result is None:
        typer.echo(f"{out} is up to date; nothing to do")
        return
    typer.echo(f"{_score_summary(result)} in {result.duration_s:.2f} s; wrote {out}"
               + (f", {state}" if state is not None else "") + f" and {manifest_path}")
    for entry in result.inputs:
        if entry.get("note") and entry.get("unscored"):
            typer.echo(f"note: {entry['path']}: {entry['rows']} rows, {entry['scored']} scored: {entry['note']}",
                       err=True)
    if result.exit_code:
        typer.echo(f"warning: {len(result.rejected)} input(s)/row(s) rejected (see {manifest_path})", err=True)
        raise typer.Exit(result.exit_code)


def _score_logs(model: Path, inputs: list[str], out: Path, state: Path | None, series_col: str | None, engine: str,
                skip_existing: bool, manifest: Path | None, device: str, quiet: bool) -> None:
    """`score` on a log model (tsad.logscore)."""
    from tsad.logscore import check_log_options, log_score_summary, score_log_job

    check_log_options(out, state=state, series_col=series_col, engine=engine)
    result, manifest_path = score_log_job(model, inputs, out, manifest_path=manifest, skip_existing=skip_existing,
                                          device=device, progress=not quiet)
    if result is None:
        typer.echo(f"{out} is up to date; nothing to do")
        return
    typer.echo(f"{log_score_summary(result)} in {result.duration_s:.2f} s; wrote {out} and {manifest_path}")
    if result.exit_code:
        typer.echo(f"warning: {len(result.rejected)} line(s)/file(s) rejected (see {manifest_path})", err=True)
        raise typer.Exit(result.exit_code)


def _score_summary(result) -> str:  # noqa: ANN001 - a core.jobs.manifest.RunManifest
    """'read 12 rows from 1 file(s): 1 scored, 11 without a score (need window history), …'."""
    total = {k: sum(e.get(k, 0) for e in result.inputs if isinstance(e.get(k, 0), int))
             for k in ("scored", "unscored", "rejected", "already_scored")}
    parts = [f"{total['scored']} scored"]
    if total["unscored"]:
        parts.append(f"{total['unscored']} written without a score (need window history)")
    if total["rejected"]:
        parts.append(f"{total['rejected']} rejected")
    if total["already_scored"]:
        parts.append(f"{total['already_scored']} already scored by an earlier run")
    files = sum(1 for e in result.inputs if e.get("rejected") == "file")
    if files:
        parts.append(f"{files} file(s) rejected")
    return f"read {result.rows_in} rows from {len(result.inputs)} file(s): {', '.join(parts)}"
