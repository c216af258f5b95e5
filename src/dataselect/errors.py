"""Errors a user can act on, each mapped to the exit code the CLI promises.

Exit codes: 0 ok, 1 data or runtime error, 2 usage error. Anything else that escapes
is a bug and is reported as an internal error (exit 1) with a hint to rerun with --debug.
"""

from __future__ import annotations


class DataselectError(Exception):
    """Base class: the message is the one line shown to the user."""

    exit_code = 1


class DataError(DataselectError):
    """The input data (or an existing output folder) is not what the stage needs."""

    exit_code = 1


class UsageError(DataselectError):
    """The command line or API call asks for something inconsistent."""

    exit_code = 2
