"""`ae recae`: train, evaluate, recommend and batch-score with the autoencoder recommender."""

from __future__ import annotations

import typer

app = typer.Typer(help="Autoencoder movie recommender: train, evaluate, recommend, score.", no_args_is_help=True)
