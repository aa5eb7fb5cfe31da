"""Errors a user can cause and fix, kept apart from bugs so the CLI can report them in one line."""

from __future__ import annotations


class UserError(ValueError):
    """Bad input or arguments: the message is shown to the user as is, without a traceback."""


class UnavailableError(Exception):
    """Something outside the user's input is unavailable (the network, a server): not bad input, so
    the CLI reports it in one line with exit 1, and retrying later may work."""


class ArtifactError(UserError):
    """A model directory is missing, truncated, tampered with or of an unknown version."""
