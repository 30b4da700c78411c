"""Recipe sections as ``medkd`` command lines: option names checked against the command itself.

A pipeline stage is one ``medkd`` command run in this process. Its recipe section is a mapping of the
command's option names (``threads: 2`` for ``--threads 2``, ``dataset: [ct, fetal]`` for a repeatable
option); an unknown key is refused with the options the command does have.
"""

from __future__ import annotations

from typing import Any

import typer

from medkd.errors import BadInput, MedkdError


def medkd_command(path: tuple[str, ...]) -> Any:
    """The (typer-click) command of ``medkd <path...>``, e.g. ``("export", "onnx")``."""
    from medkd.cli import app

    command = typer.main.get_command(app)
    for name in path:
        if name not in getattr(command, "commands", {}):
            raise BadInput(f"medkd has no command '{' '.join(path)}'")
        command = command.commands[name]
    return command


def _options(command: Any) -> dict[str, Any]:
    return {param.name: param for param in command.params if param.param_type_name == "option" and param.name}


def check_section(path: tuple[str, ...], section: dict[str, Any], where: str) -> None:
    """Refuse keys that are not options of ``medkd <path>``, naming the bad key."""
    known = _options(medkd_command(path))
    for key in section:
        if key.replace("-", "_") not in known:
            raise BadInput(f"{where}: unknown key '{key}' (options of 'medkd {' '.join(path)}': {', '.join(sorted(known))})")


def command_line(path: tuple[str, ...], arguments: list[str], section: dict[str, Any]) -> list[str]:
    """``[*path, *arguments, --option value ...]`` for the options in ``section``."""
    options = _options(medkd_command(path))
    line = [*path, *arguments]
    for key, value in section.items():
        option = options.get(key.replace("-", "_"))
        if option is None:
            raise BadInput(f"'medkd {' '.join(path)}' has no option '{key}'")
        if value is None:
            continue
        if option.is_flag:
            names = option.opts if value else option.secondary_opts
            if not names and value is not option.default:
                raise BadInput(f"'medkd {' '.join(path)}' option '{key}' cannot be set to {value!r}")
            line.extend(names[:1])
        elif option.multiple:
            for item in value if isinstance(value, list) else [value]:
                line.extend([option.opts[0], str(item)])
        else:
            line.extend([option.opts[0], str(value)])
    return line


def run_command(line: list[str]) -> None:
    """Run ``medkd <line>`` in this process; errors propagate as exceptions (``BadInput`` etc.)."""
    from medkd.cli import app

    command = typer.main.get_command(app)
    try:
        command.main(args=line, prog_name="medkd", standalone_mode=False)
    except typer.Exit as exc:
        if exc.exit_code:
            raise MedkdError(f"medkd {' '.join(line[:2])} exited with {exc.exit_code}") from exc
    except Exception as exc:
        if hasattr(exc, "format_message") and getattr(exc, "exit_code", None) == 2:  # usage errors
            raise BadInput(f"medkd {' '.join(line[:2])}: {exc.format_message()}") from exc
        raise
