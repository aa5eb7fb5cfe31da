"""`ae tsad monitor --format log` throughput and memory on a generated OpenSSH-style log.

A model is trained (`ae tsad train --format log --log-format openssh`, 1-minute buckets) on 6 hours
of generated normal traffic; then 100,000 and 1,000,000 generated lines (normal traffic with a
brute-force burst every 10,000 minutes) are piped through the monitor in a fresh process each. We
report the monitor's own lines/s (its summary: parsing, template matching, counting, scoring,
alerting; process start and model load excluded), the wall time including them, and the
monitor process's peak RSS (GNU time). Issue 12's bar: ≥ 20,000 lines/s on 2 cores with flat
memory (peak RSS at 100 k ≈ at 1 M).
Usage: python bench/logs_throughput.py [--lines 100000,1000000] [--threads 1]
"""

from __future__ import annotations

import argparse
import random
import re
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

from _common import table

ROOT = Path(__file__).resolve().parents[1]
USERS = ["fred", "alice", "bob", "deploy", "git"]
BAD = ["admin", "oracle", "test", "guest", "ubuntu", "pi"]


def _ip(rng: random.Random) -> str:
    return f"{rng.randint(11, 220)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"


def lines(n: int, seed: int, burst_every: int | None = None):  # noqa: ANN201 - a generator of str
    """n syslog lines: a few logins a minute, a failed login now and then, optional bursts."""
    rng, start, made, minute = random.Random(seed), datetime(2024, 1, 1), 0, 0
    while made < n:
        events = []
        for _ in range(rng.randint(2, 5)):
            user, ip, port = rng.choice(USERS), _ip(rng), rng.randint(1024, 65000)
            events += [f"Accepted password for {user} from {ip} port {port} ssh2",
                       f"pam_unix(sshd:session): session opened for user {user} by (uid=0)",
                       f"Received disconnect from {ip}: 11: disconnected by user",
                       f"pam_unix(sshd:session): session closed for user {user}"]
        attacks = 50 if burst_every and minute % burst_every == burst_every - 1 else int(rng.random() < 0.3)
        for _ in range(attacks):
            ip, user = _ip(rng), rng.choice(BAD)
            events += [f"Invalid user {user} from {ip}",
                       f"Failed password for invalid user {user} from {ip} port {rng.randint(1024, 65000)} ssh2",
                       f"Connection closed by {ip} [preauth]"]
        t = start + timedelta(minutes=minute)
        for msg in events[: n - made]:
            yield f"{t:%b} {t.day:2d} {t:%H:%M:%S} LabSZ sshd[{rng.randint(1000, 30000)}]: {msg}\n"
        made += min(len(events), n - made)
        minute += 1


def ae(*args: str, stdin=None, rss: Path | None = None) -> subprocess.CompletedProcess:  # noqa: ANN001
    """`ae ARGS` in a fresh process; with `rss`, GNU time writes its peak RSS (KB) there."""
    timer = ["/usr/bin/time", "-f", "%M", "-o", str(rss)] if rss is not None else []
    return subprocess.run([*timer, sys.executable, "-c", "from cli import main; main()", *args], cwd=ROOT,
                          stdin=stdin, capture_output=True, text=True, check=False)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", default="100000,1000000")
    ap.add_argument("--threads", default="1")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        train = tmp / "train.log"
        train.write_text("".join(lines(5_000, seed=0)))
        trained = ae("tsad", "train", "--format", "log", "--log-format", "openssh", "--data", str(train),
                     "--out", str(tmp / "model"), "--device", "cpu", "--quiet")
        if trained.returncode != 0:
            sys.exit(trained.stdout + trained.stderr)
        rows = []
        for n in [int(x) for x in args.lines.split(",")]:
            data = tmp / f"stream_{n}.log"
            with data.open("w") as f:
                f.writelines(lines(n, seed=1, burst_every=10_000))
            t0 = time.perf_counter()
            with data.open() as f:
                run = ae("tsad", "monitor", "--model", str(tmp / "model"), "--format", "log", "--alerts",
                         str(tmp / f"alerts_{n}.jsonl"), "--device", "cpu", "--threads", args.threads, stdin=f,
                         rss=tmp / "rss")
            wall = time.perf_counter() - t0
            peak_kb = int((tmp / "rss").read_text().split()[-1])
            if run.returncode != 0:
                sys.exit(run.stdout + run.stderr)
            found = re.search(r"in ([0-9.]+) s", run.stderr + run.stdout)
            own = float(found.group(1)) if found else float("nan")
            alerts = sum(1 for _ in (tmp / f"alerts_{n}.jsonl").open())
            rows.append([f"{n:,}", f"{n / own:,.0f}", f"{n / wall:,.0f}", f"{wall:.1f}",
                         f"{peak_kb / 1024:.0f}", alerts])
            print((run.stderr + run.stdout).strip().splitlines()[-1], flush=True)
    table(f"monitor --format log on generated OpenSSH lines (torch threads {args.threads})",
          ["lines", "lines/s (monitor)", "lines/s (wall, incl. start)", "wall s", "peak RSS MB", "alerts"], rows)


if __name__ == "__main__":
    main()
