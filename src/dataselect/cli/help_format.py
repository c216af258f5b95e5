"""How `--help` and usage errors name things, where typer's defaults mislead.

typer 0.29 writes required arguments as ``{input}`` in the usage line (read as a template
placeholder) and a ``<bool>`` type after every flag (read as a value to give, but
``--overwrite true`` is an error). Here arguments are named in upper case, as click and
most command-line tools do (``INPUT OUTPUT``, ``[NAME]`` when optional), and flags show no
type. A usage error (a missing argument, an unknown option) is one line, as every other
error (``dataselect: error: ...``), not typer's boxed panel: logs under cron stay greppable.
Installed once, when the command-line app is built; tests/test_help.py renders every
command's help and checks it."""

from __future__ import annotations

import sys
from typing import Any

from typer import core, rich_utils


def _argument_name(self: core.TyperArgument) -> str:
    return self.metavar if self.metavar is not None else str(self.name).upper()


def _usage_name(self: core.TyperArgument) -> str:
    name = self.display_name_raw if self.required else f"[{self.display_name_raw}]"
    return f"{name}..." if self.nargs != 1 else name


_option_type = core.TyperOption.display_type_rich


def _flag_without_type(self: core.TyperOption, ctx: Any) -> str | None:
    return None if self.is_flag else _option_type(self, ctx)


def _one_line_error(error: Any) -> None:
    if type(error).__name__ == "NoArgsIsHelpError":  # typer prints the help for it
        return
    context = getattr(error, "ctx", None)
    hint = f" (see '{context.command_path} --help')" if context is not None else ""
    message = " ".join(str(error.format_message()).split())
    print(f"dataselect: error: {message}{hint}", file=sys.stderr)


def install() -> None:
    core.TyperArgument.display_name_raw = property(_argument_name)  # type: ignore[assignment,method-assign]
    core.TyperArgument._usage_display_name = _usage_name  # type: ignore[method-assign]
    core.TyperOption.display_type_rich = _flag_without_type  # type: ignore[method-assign]
    rich_utils.rich_format_error = _one_line_error  # type: ignore[assignment]
