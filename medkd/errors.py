"""Exceptions that the CLI turns into one-line errors and exit codes."""


class MedkdError(Exception):
    """A failure of the work itself (exit code 1)."""

    exit_code = 1


class BadInput(MedkdError):
    """Input the user can fix: a missing file, a wrong checksum, a bad flag (exit code 2)."""

    exit_code = 2


class MedkdWarning(UserWarning):
    """Something the user should know that does not stop the work; the CLI prints one ``warning:`` line."""


class PreprocessingWarning(MedkdWarning):
    """A model is run with other preprocessing than it was trained with, or with a guessed one."""
