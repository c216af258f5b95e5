"""The options of the dedup stage (``dataselect dedup``, the ``dedup:`` section)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dataselect.deduplication.text import NORMALISATIONS, parse_normalisations
from dataselect.embedding.text import (
    TextSpec,
    template_option,
    text_column_option,
    text_spec_of,
)
from dataselect.errors import UsageError
from dataselect.options import StageConfig, at_least, one_of, option, seed_option

METHODS = ("exact", "minhash", "semantic")  # applied in this order: a row dropped once


def parse_methods(value: Any) -> tuple[str, ...]:
    """--method exact,minhash,semantic (or repeated): each once, in the fixed order."""
    items = value if isinstance(value, (list, tuple)) else [value]
    names = {part.strip() for item in items for part in str(item).split(",") if part.strip()}
    unknown = names - set(METHODS)
    if unknown or not names:
        raise UsageError(f"must be some of {', '.join(METHODS)}, not {value!r}")
    return tuple(m for m in METHODS if m in names)


def parse_fraction(value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise UsageError(f"must be a number, not {value!r}") from None
    if not 0 < number <= 1 or isinstance(value, bool):
        raise UsageError(f"must be in (0, 1], not {value!r}")
    return number


def parse_eps(value: Any) -> float:
    number = parse_fraction(value)
    if number >= 1:
        raise UsageError(f"must be in (0, 1), not {value!r}")
    return number


@dataclass
class DedupConfig(StageConfig):
    """Options of ``dataselect dedup`` (see its --help)."""

    method: tuple[str, ...] = option(
        ("exact", "minhash"),
        "Methods, comma-separated: exact (normalised text), minhash (near copies), "
        "semantic (SemDeDup within k-means clusters; needs a cluster or score folder).",
        parse=parse_methods,
        cli_type=str,
    )
    normalize: tuple[str, ...] = option(
        NORMALISATIONS,
        "Text normalisation before exact and minhash, comma-separated: "
        + ", ".join(NORMALISATIONS) + ", or none.",
        parse=parse_normalisations,
        cli_type=str,
    )  # fmt: skip
    ngram: int = option(5, "minhash: shingle size (characters, or words).", parse=at_least(1))
    ngram_unit: str = option("char", "minhash: shingles of char or word.",
                             parse=one_of("char", "word"))  # fmt: skip
    threshold: float = option(
        0.7, "minhash: estimated Jaccard similarity that makes a near copy.", parse=parse_fraction
    )
    num_perm: int = option(128, "minhash: signature slots (4 bytes each per row).",
                           parse=at_least(16))  # fmt: skip
    eps: float = option(
        0.05, "semantic: rows with cosine similarity above 1 - eps are duplicates.",
        parse=parse_eps,
    )  # fmt: skip
    keep: str = option(
        "closest",
        "semantic: which row of a group stays: closest (to its centroid) or score "
        "(highest --score-column).",
        parse=one_of("closest", "score"),
    )
    score_column: str | None = option(None, "semantic --keep score: the score column.")
    against: tuple[str, ...] = option(
        (),
        "Decontaminate: drop rows that duplicate a row of this evaluation set (repeatable; "
        "raw data or a stage folder; an embed folder for semantic).",
        path=True,
    )
    text_column: str | None = text_column_option()
    template: str | None = template_option()
    seed: int = seed_option()

    def check(self) -> None:
        if self.keep == "score" and not self.score_column:
            raise UsageError("--keep score needs --score-column")
        if self.ngram_unit == "char" and self.ngram > 8:
            raise UsageError(f"--ngram {self.ngram}: character shingles are 1 to 8 bytes")

    def text_spec(self) -> TextSpec | None:
        return text_spec_of(self.text_column, self.template)

    @property
    def reads_text(self) -> bool:
        return "exact" in self.method or "minhash" in self.method
