"""Registries of pluggable entries (scorers, sampling strategies): one class per entry, in
one module, listed once. Everything else (the config's options, --help, the dry run, the
shared tests) is derived from the list.

An entry class declares ``names`` (what users type), ``summary`` (its --help paragraph) and
``Options``, a dataclass of ``options.option`` fields. Options of several entries share one
flat namespace (``--l2`` is the influence and label-agreement scorers' option): an option
declared by two entries must be declared alike.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from dataselect.errors import UsageError
from dataselect.options import OptionSpec, StageConfig, option_specs


class Entry(Protocol):
    names: ClassVar[tuple[str, ...]]
    summary: ClassVar[str]
    Options: ClassVar[type]

    @classmethod
    def matches(cls, name: str) -> bool: ...


E = TypeVar("E", bound=type[Entry])


class Registry(Generic[E]):
    def __init__(self, kind: str, entries: list[E]) -> None:
        self.kind = kind
        self.entries = entries
        self.options: dict[str, OptionSpec] = {}
        for entry in entries:
            for spec in option_specs(entry.Options):
                known = self.options.setdefault(spec.name, spec)
                if (known.type, known.default, known.meta) != (spec.type, spec.default, spec.meta):
                    raise TypeError(f"{entry.__name__} declares option {spec.name!r} unlike "
                                    "another entry")  # fmt: skip

    def __iter__(self) -> Iterator[E]:
        return iter(self.entries)

    def names(self) -> list[str]:
        return [name for entry in self.entries for name in entry.names]

    def find(self, name: str) -> E | None:
        return next((entry for entry in self.entries if entry.matches(name)), None)

    def get(self, name: str) -> E:
        entry = self.find(name)
        if entry is None:
            raise UsageError(f"no {self.kind} {name!r}")
        return entry

    def options_of(self, entry: E, values: Mapping[str, Any]) -> Any:
        """An instance of ``entry.Options`` from the config's option values."""
        names = [spec.name for spec in option_specs(entry.Options)]
        return entry.Options(**{name: values[name] for name in names if name in values})


@dataclass(init=False)
class RegistryConfig(StageConfig):
    """A config whose options are its own fields plus every option its registry's entries
    declare (kept in ``options``), all given flat: ``ScoreConfig(scorers=("dsir",),
    target="t.parquet")``, as on the command line and in YAML."""

    registry: ClassVar[Registry[Any]]
    options: dict[str, Any] = field(default_factory=dict)

    def __init__(self, **values: Any) -> None:
        own = {spec.name: spec for spec in option_specs(type(self))}
        extra = type(self).registry.options
        unknown = sorted(set(values) - set(own) - set(extra) - {"options"})
        if unknown:
            raise UsageError(f"unknown option(s) {', '.join(unknown)}")
        given = {**values.pop("options", {}), **values}
        for name, spec in own.items():
            setattr(self, name, spec.coerce(given.get(name, spec.default)))
        self.options = {
            name: spec.coerce(given.get(name, spec.default)) for name, spec in extra.items()
        }

    @classmethod
    def option_specs(cls) -> list[OptionSpec]:
        return [*option_specs(cls), *cls.registry.options.values()]

    def values(self) -> dict[str, Any]:
        own = {spec.name: getattr(self, spec.name) for spec in option_specs(type(self))}
        return {**own, **self.options}

    def options_for(self, entry: Any) -> Any:
        """The typed options of one registered entry."""
        return self.registry.options_of(entry, self.options)
