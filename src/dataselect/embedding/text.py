"""Which text to embed: one column, or a template over several (e.g. prompt + completion)."""

from __future__ import annotations

import string
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from dataselect.errors import DataError, UsageError
from dataselect.io.sources import InputDataset, InputShard
from dataselect.options import option


@dataclass(frozen=True)
class TextSpec:
    """``column`` names one text column; ``template`` (str.format syntax) joins several."""

    column: str = "text"
    template: str | None = None

    @property
    def columns(self) -> list[str]:
        if self.template is None:
            return [self.column]
        names: list[str] = []
        for _, field, _, _ in string.Formatter().parse(self.template):
            if field is None:
                continue
            if field == "" or field.isdigit():
                raise UsageError("--template fields must be column names, e.g. '{prompt}'")
            name = field.split(".")[0].split("[")[0]
            if name not in names:
                names.append(name)
        if not names:
            raise UsageError("--template names no column, e.g. '{prompt}\\n{completion}'")
        return names

    def validate(self, dataset: InputDataset) -> None:
        dataset.require_columns(self.columns, what="text column")
        for name in self.columns:
            kind = dataset.schema.field(name).type
            if not (is_text_like(kind) or pa.types.is_null(kind)):
                raise DataError(
                    f"{dataset.path}: column '{name}' is {kind}, not text "
                    "(use --vector-column for precomputed vectors)"
                )

    def texts(self, batch: pa.RecordBatch, shard: InputShard, offset: int) -> list[str]:
        """The texts of a batch; a null or non-text value is an error naming its row."""
        columns = {}
        for name in self.columns:
            values = batch.column(name)
            if values.null_count:
                row = shard.first_row + offset + int(pc.index(pc.is_null(values), True).as_py())
                raise DataError(f"{shard.path}: null text in column '{name}' at row {row}")
            if not is_text_like(values.type):
                raise DataError(f"{shard.path}: column '{name}' holds {values.type}, not text")
            columns[name] = rendered(values)
        if self.template is None:
            return columns[self.column]
        rows = [
            dict(zip(columns, vals, strict=True)) for vals in zip(*columns.values(), strict=True)
        ]
        return [self.template.format(**row) for row in rows]


def text_column_option() -> Any:
    """--text-column of a stage after embed (score, dedup): by default the embedded text."""
    return option(None, "Text column \\[default: what the embed stage embedded, else 'text'].")


def template_option() -> Any:
    """--template of a stage after embed (score, dedup)."""
    return option(
        None, "Text from several columns, e.g. '{prompt}\\n{response}'.", parse=parse_template
    )


def text_spec_of(text_column: str | None, template: str | None) -> TextSpec | None:
    """The text a stage's --text-column / --template name; None: its default (the text the
    embed stage embedded)."""
    if template:
        return TextSpec(template=template)
    return TextSpec(text_column) if text_column else None


def _is_text(kind: pa.DataType) -> bool:
    return pa.types.is_string(kind) or pa.types.is_large_string(kind)


def _is_list(kind: pa.DataType) -> bool:
    return pa.types.is_list(kind) or pa.types.is_large_list(kind)


def is_text_like(kind: pa.DataType) -> bool:
    """Text, a list of texts, or a chat: a list of structs of text fields (e.g. messages:
    list<struct<role, content>>)."""
    if _is_text(kind):
        return True
    if not _is_list(kind):
        return False
    item = kind.value_type
    if pa.types.is_struct(item):
        return any(_is_text(item.field(i).type) for i in range(item.num_fields))
    return _is_text(item)


def rendered(values: pa.Array) -> list[str]:
    """A text column's values as text. A list of texts is joined by newlines; a chat (a list
    of structs) is one line per message, ``role: content`` (with no role or content field:
    its text fields in order, joined by ": "; empty ones left out), joined by newlines."""
    if _is_text(values.type):
        return [str(v) for v in values.to_pylist()]
    item = values.type.value_type
    names = [item.field(i).name for i in range(item.num_fields)
             if _is_text(item.field(i).type)] if pa.types.is_struct(item) else []  # fmt: skip
    if "content" in names:  # chats store {content, role} in either order: role first
        names = [n for n in ("role", "content") if n in names]
    out = []
    for row in values.to_pylist():
        lines = []
        for entry in row or []:
            if isinstance(entry, dict):
                lines.append(": ".join(str(entry[n]) for n in names if entry.get(n)))
            elif entry is not None:
                lines.append(str(entry))
        out.append("\n".join(lines))
    return out


def unescape_template(template: str) -> str:
    r"""Let shell users write \n and \t inside --template."""
    return template.replace("\\n", "\n").replace("\\t", "\t")


def parse_template(value: object) -> str | None:
    """--template, from any source: text with \\n and \\t understood (or none)."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise UsageError(f"must be text, not {value!r}")
    template = unescape_template(value)
    try:
        list(string.Formatter().parse(template))
    except ValueError as exc:
        raise UsageError(
            f"is not a valid template ({exc}); write a literal brace as {{{{ or }}}}"
        ) from None
    return template
