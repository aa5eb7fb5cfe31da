"""The detector's part of `ae demo`: the Keras example on NAB — train on art_daily_small_noise,
detect on art_daily_jumpsup — with the flagged ranges beside the labelled window; and logs: a log
model on the Loghub OpenSSH 2k sample, alerting on an injected brute-force burst (`run_logs`)."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pandas as pd

from core.jobs.report import Section
from tsad.config import DetectorConfig
from tsad.datasets import load_nab
from tsad.detector import WindowDetector
from tsad.metrics import segments
from tsad.plots import plot_scores

TRAIN = "artificialNoAnomaly/art_daily_small_noise.csv"
TEST = "artificialWithAnomaly/art_daily_jumpsup.csv"


def run(data_dir: Path, out: Path, device: str, seed: int, quick: bool, progress: bool) -> Section:
    train, test = load_nab(data_dir, TRAIN), load_nab(data_dir, TEST)
    config = DetectorConfig(window=288).updated({"training.epochs": 5 if quick else 50})
    det = WindowDetector(config, seed=seed, device=device, progress=progress)
    det.fit(train)
    result = det.score(test)
    flagged = segments(result.is_anomaly)
    ts = test.timestamps
    rows = [["flagged by the detector", str(ts[lo]), str(ts[hi]), hi - lo + 1] for lo, hi in flagged]
    rows += [["labelled anomaly window (NAB)", str(ts[lo]), str(ts[hi]), hi - lo + 1] for lo, hi in test.windows]
    section = Section("Anomaly detection (NAB: the Keras autoencoder example)")
    level = det.alerting_.describe()  # spot: the alert level as training left it (it follows the stream)
    section.text(f"Trained on {TRAIN} ({len(train)} rows, window 288) with the detector's defaults "
                 f"({'centred' if config.network.center else 'plain'} windows, {config.alerting.mode} alerting, "
                 f"alert level {level:.4g} after training; the Keras example's rule, the largest training error, "
                 f"is {det.threshold_.threshold_:.4g}); scored {TEST} causally at "
                 f"{result.points_per_second:,.0f} points/s.")
    section.table(pd.DataFrame(rows, columns=["range", "start", "end", "rows"]))
    section.image(plot_scores(test, result, level, out / "tsad_scores.png"), "anomaly scores")
    return section


# ------------------------------------------------------------------------------------- logs
LOG_SAMPLE = Path("loghub") / "OpenSSH" / "OpenSSH_2k.log"
LOG_LINE = re.compile(r"(?P<mon>[A-Z][a-z]{2})\s+(?P<day>\d{1,2})\s+(?P<hms>\d{1,2}:\d{2}:\d{2})\s")
BURST_ATTEMPTS = 1000  # failed logins of the injected attack, 3 lines each, in one minute (see run_logs)
BAD_USERS = ("admin", "oracle", "test", "guest", "ubuntu", "pi", "support", "postgres")


def _minute(line: str) -> pd.Timestamp | None:
    m = LOG_LINE.match(line)
    if m is None:
        return None
    return pd.Timestamp(f"2000 {m['mon']} {m['day']} {m['hms']}").floor("1min")


def inject_burst(lines: list[str], seed: int, attempts: int = BURST_ATTEMPTS) -> tuple[list[str], pd.Timestamp, int]:
    """The lines with a brute-force burst from one address (`attempts` × Invalid user / input_userauth_request /
    Failed password, the sample's own templates) in the middle of the sample's longest quiet stretch.
    Returns (lines, the burst's minute (year 2000, as the parser's default year may differ), first burst line)."""
    minutes = [_minute(line) for line in lines]
    seen = sorted({t for t in minutes if t is not None})
    gaps = [(b - a, a) for a, b in zip(seen, seen[1:])]
    length, after = max(gaps)
    at = after + pd.Timedelta(minutes=int(length / pd.Timedelta(minutes=1)) // 2)
    rng = random.Random(seed)
    ip = f"{rng.randint(11, 220)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
    burst = []
    for k in range(attempts):
        t = at + pd.Timedelta(seconds=int(k * 60 / attempts))
        pid, user, port = rng.randint(1000, 30000), rng.choice(BAD_USERS), rng.randint(1024, 65000)
        stamp = f"{t:%b} {t.day:2d} {t:%H:%M:%S} LabSZ sshd[{pid}]:"
        burst += [f"{stamp} Invalid user {user} from {ip}",
                  f"{stamp} input_userauth_request: invalid user {user} [preauth]",
                  f"{stamp} Failed password for invalid user {user} from {ip} port {port} ssh2"]
    cut = next(i for i, t in enumerate(minutes) if t is not None and t > at)
    return lines[:cut] + burst + lines[cut:], at, cut + 1


def run_logs(data_dir: Path, out: Path, device: str, seed: int, quick: bool, progress: bool) -> Section:
    """Logs: train a log model on the Loghub OpenSSH 2k sample, score the sample with an injected
    brute-force burst, and show the alerts with the templates that made them."""
    from tsad.logmodel import ParserSettings, detect_log, log_detector_config, train_log_model

    section = Section("Log anomalies (Loghub OpenSSH 2k with an injected brute-force burst)")
    sample = data_dir / LOG_SAMPLE
    if not sample.is_file():
        section.text(f"Skipped: {sample} is not there (the loghub dataset: `ae data fetch loghub`).", note=True)
        return section
    lines = sample.read_text(encoding="utf-8", errors="replace").splitlines()
    injected, at, first = inject_burst(lines, seed)
    test = out / "openssh_injected.log"
    test.write_text("\n".join(injected) + "\n", encoding="utf-8")
    # the full training even with --quick: 250 rows of counts train in seconds
    trained = train_log_model(sample, ParserSettings.create("openssh"), log_detector_config(), bucket="1min",
                              seed=seed, device=device, progress=progress)
    found = detect_log(trained.model, test)
    frame = found.frame
    alerts = frame[frame["is_anomaly"]]
    section.text(f"Trained a log model on {LOG_SAMPLE.name} ({trained.report.parsed} lines, {trained.templates} "
                 f"templates, {trained.rows} rows of 1 min; `ae tsad train --format log --log-format openssh`), then "
                 f"scored the sample with {3 * BURST_ATTEMPTS} injected lines ({BURST_ATTEMPTS} failed logins from "
                 f"one address at {at:%H:%M}, lines {first}-{first + 3 * BURST_ATTEMPTS - 1}) as `ae tsad detect` "
                 f"and `ae tsad score` do: {len(frame)} rows, {len(alerts)} alert(s). The sample is itself a lab "
                 f"server under steady attack (up to ~115 lines a minute), so the threshold (the largest training "
                 f"score, {trained.model.detector.alerting_.describe():.3g}) only lets a much larger burst through; "
                 "smaller injected bursts (a few hundred lines) stay below it.")
    rows = [[f"{row.time:%H:%M}", int(row.first_line), int(row.last_line), int(row.lines), float(row.score),
             "yes" if row.first_line <= first <= row.last_line else "no", row.templates]
            for row in alerts.itertuples(index=False)]
    section.table(pd.DataFrame(rows, columns=["minute", "first line", "last line", "lines", "score",
                                              "injected burst", "templates (count against the usual level)"]),
                  caption="alerted rows")
    return section
