"""The options of a stage, declared once on its config: name, type, default, help, flags and
parsing. The command line, the YAML of `dataselect run` and the Python API all build a
config through the same parsing, so a value means the same wherever it comes from.

A config field declared with ``option(...)`` is a user option; ``option_specs`` lists a
config's options with their resolved types; ``coerce`` checks one value against its type
(and the option's own ``parse``), naming the option when it is wrong.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Union

from dataselect.errors import UsageError


class OptionError(UsageError):
    """A value that does not fit its option: "--niter must be an integer, not 'twenty'".
    `dataselect run` names the option as its key instead (``cluster.niter``)."""

    def __init__(self, name: str, problem: str) -> None:
        self.option = name
        self.problem = problem
        super().__init__(f"{flag_of(name)} {problem}")


@dataclass(frozen=True)
class Option:
    """What a config field needs beyond its type and default to be a user option."""

    help: str
    flags: tuple[str, ...] = ()  # command-line flags [default: --name-with-dashes]
    parse: Callable[[Any], Any] | None = None  # checks and normalises a value, any source
    cli_type: Any = None  # what the command line reads [default: the field's type]
    cli: bool = True  # False: set by dataselect itself or only from the API / YAML
    required: bool = False  # the command line asks for it (the API and YAML default it)
    path: bool = False  # a file or folder: in a run config, relative to the config's folder


def option(
    default: Any,
    help: str,
    *,
    flags: tuple[str, ...] = (),
    parse: Callable[[Any], Any] | None = None,
    cli_type: Any = None,
    cli: bool = True,
    required: bool = False,
    path: bool = False,
) -> Any:
    """A config field that is a user option (see ``Option``)."""
    meta = {"option": Option(help, flags, parse, cli_type, cli, required, path)}
    if isinstance(default, (list, dict, set)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def flag_of(name: str) -> str:
    return "--" + name.replace("_", "-")


@dataclass(frozen=True)
class OptionSpec:
    """One option of a config: its name, resolved type, default and declaration."""

    name: str
    type: Any
    default: Any
    meta: Option

    @property
    def flags(self) -> tuple[str, ...]:
        return self.meta.flags or (flag_of(self.name),)

    def coerce(self, value: Any) -> Any:
        """``value`` checked against the option's type and normalised by its parse."""
        if self.meta.parse is not None:
            try:
                return self.meta.parse(value)
            except OptionError:
                raise
            except UsageError as exc:  # a parse that names its own problem
                raise OptionError(self.name, str(exc)) from None
        return coerce_type(self.name, self.type, value)


def option_specs(cls: type) -> list[OptionSpec]:
    """The user options of a config dataclass, in declaration order."""
    hints = typing.get_type_hints(cls)
    specs = []
    for field in dataclasses.fields(cls):
        meta = field.metadata.get("option")
        if meta is None:
            continue
        if field.default is not dataclasses.MISSING:
            default = field.default
        elif field.default_factory is not dataclasses.MISSING:
            default = field.default_factory()
        else:
            default = None
        specs.append(OptionSpec(field.name, hints[field.name], default, meta))
    return specs


def coerce_fields(config: Any) -> None:
    """Check and normalise every option field of ``config`` in place (its __post_init__)."""
    for spec in option_specs(type(config)):
        object.__setattr__(config, spec.name, spec.coerce(getattr(config, spec.name)))


def coerce_type(name: str, kind: Any, value: Any) -> Any:
    """``value`` as the declared ``kind``: int, float, str, bool, X | None, tuple[X, ...]."""
    origin = typing.get_origin(kind)
    if origin in (Union, types.UnionType):
        members = typing.get_args(kind)
        if value is None and type(None) in members:
            return None
        last: OptionError | None = None
        for member in (m for m in members if m is not type(None)):
            try:
                return coerce_type(name, member, value)
            except OptionError as exc:
                last = exc
        assert last is not None
        raise last
    if origin is tuple:
        item = typing.get_args(kind)[0]
        values = [value] if isinstance(value, (str, int, float)) else value
        if not isinstance(values, (list, tuple)):
            raise OptionError(name, f"must be a list, not {value!r}")
        return tuple(coerce_type(name, item, v) for v in values)
    if kind is bool:
        if isinstance(value, bool):
            return value
        raise OptionError(name, f"must be true or false, not {value!r}")
    if kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise OptionError(name, f"must be an integer, not {value!r}")
    if kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise OptionError(name, f"must be a number, not {value!r}")
    if kind is str:
        if isinstance(value, str):
            return value
        raise OptionError(name, f"must be text, not {value!r}")
    return value  # Any


# -- parses shared by several options --------------------------------------------------------
def typed(kind: Any, value: Any) -> Any:
    """``coerce_type`` for a parse: the problem alone (its option adds its own name)."""
    try:
        return coerce_type("", kind, value)
    except OptionError as exc:
        raise UsageError(exc.problem) from None


def at_least(low: int) -> Callable[[Any], int]:
    """An integer of at least ``low``."""

    def parse(value: Any) -> int:
        number = typed(int, value)
        if number < low:
            raise UsageError(f"must be at least {low}, not {number}")
        return int(number)

    return parse


def positive_number(value: Any) -> float:
    number = typed(float, value)
    if not number > 0 or math.isinf(number):
        raise UsageError(f"must be a positive number, not {value!r}")
    return float(number)


def one_of(*choices: str) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        if value not in choices:
            raise UsageError(f"must be one of {', '.join(choices)}, not {value!r}")
        return str(value)

    return parse


@dataclass(frozen=True)
class NoOptions:
    """A registered entry with no options of its own."""


def seed_option() -> Any:
    """``--seed``: every stage's, fixed by default so that a plain rerun repeats."""
    return option(0, "Seed for every random choice.")


class StageConfig:
    """Base of a stage's config (a dataclass of ``option`` fields): its options for the
    command line and the YAML schema, their parsing on construction, and ``check``."""

    @classmethod
    def option_specs(cls) -> list[OptionSpec]:
        return option_specs(cls)

    def __post_init__(self) -> None:
        coerce_fields(self)

    def check(self) -> None:
        """Refuse combinations of values that no single option's parse can see."""

    def values(self) -> dict[str, Any]:
        """Every option's value, by name (what the stage records among its parameters)."""
        return {spec.name: getattr(self, spec.name) for spec in self.option_specs()}
