"""Whether a written ``medkd ...`` call (in the README, in a workflow) reaches a command and uses only its options."""

from __future__ import annotations

import typer

from medkd.cli import app


def _command(words: list[str]):
    """The click command a medkd call reaches and the words left for it."""
    command = typer.main.get_command(app)
    while hasattr(command, "commands") and words:
        if words[0] in command.commands:
            command, words = command.commands[words[0]], words[1:]
        elif "run" in command.commands:  # medkd bench MODEL ... means medkd bench run MODEL ...
            command = command.commands["run"]
        else:
            break
    return command, words


def call_problems(words: list[str]) -> list[str]:
    """What is wrong with ``medkd <words>``: no such command, or options it does not have."""
    command, rest = _command(words)
    if hasattr(command, "commands") and not command.invoke_without_command:
        return [f"medkd {' '.join(words)}: no such command"]
    known = {opt for param in command.params for opt in param.opts + param.secondary_opts}
    return [f"medkd {' '.join(words)}: unknown option {word}" for word in rest if word.startswith("-") and word.split("=")[0] not in known]


def documented_options(words: list[str]) -> list[str]:
    """The options of ``medkd <words>`` that ``--help`` hides (old spellings) and the call uses."""
    command, rest = _command(words)
    hidden = {opt for param in command.params if getattr(param, "hidden", False) for opt in param.opts}
    return [word for word in rest if word in hidden]
