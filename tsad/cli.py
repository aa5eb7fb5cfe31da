"""`ae tsad`: train, detect, evaluate, monitor and batch-score with the window anomaly detector."""

from __future__ import annotations

import typer

app = typer.Typer(help="Sliding-window autoencoder anomaly detector for time series.", no_args_is_help=True)
