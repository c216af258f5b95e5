"""Text as the dedup methods compare it: normalised (pyarrow compute, vectorised), hashed
whole for ``exact``, cut into hashed n-gram shingles for ``minhash``."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dataselect.errors import UsageError
from dataselect.keyed import mix64, row_keys_streams, span_hashes

_U = np.uint64
NORMALISATIONS = ("nfkc", "case", "punctuation", "whitespace")
MAX_SHINGLE_BYTES = 1 << 16  # shingles of a text's first 64 KiB (bounds the work per row)
_TEXT_STREAMS = (0x7E47, 0x7E48)  # two 64-bit hashes of a normalised text: 128 bits
_SALT = _U(0x5D1F_0B3A_9C47_E2D1)


def parse_normalisations(value: object) -> tuple[str, ...]:
    """``--normalize nfkc,case,...`` (or ``none``) as a tuple in the fixed order above."""
    items = value if isinstance(value, (list, tuple)) else str(value).split(",")
    names = {str(item).strip().lower() for item in items if str(item).strip()}
    if names == {"none"}:
        return ()
    unknown = names - set(NORMALISATIONS)
    if unknown:
        raise UsageError(f"unknown {', '.join(sorted(unknown))}: choose from "
                         f"{', '.join(NORMALISATIONS)} or none")  # fmt: skip
    return tuple(name for name in NORMALISATIONS if name in names)


def normalised(texts: pa.Array, how: Sequence[str]) -> pa.Array:
    """``texts`` with the chosen normalisations applied (null becomes empty)."""
    texts = pc.fill_null(texts.cast(pa.string()), "")
    if "nfkc" in how:
        texts = pc.utf8_normalize(texts, "NFKC")
    if "case" in how:
        texts = pc.utf8_lower(texts)
    if "punctuation" in how:  # Unicode punctuation and symbols go; a word edge stays one
        texts = pc.replace_substring_regex(texts, r"[\p{P}\p{S}]+", " ")
    if "whitespace" in how:
        texts = pc.utf8_trim_whitespace(pc.replace_substring_regex(texts, r"\s+", " "))
    return texts


def text_hashes(texts: pa.Array) -> np.ndarray:
    """A 128-bit hash per (normalised) text, as an (n, 2) uint64 array."""
    first, second = row_keys_streams(texts, 0, _TEXT_STREAMS)
    return np.stack([first, second], axis=1)


def _buffer(texts: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """The UTF-8 bytes of ``texts`` (each cut at MAX_SHINGLE_BYTES) and each text's start
    and end in them."""
    texts = texts.cast(pa.large_string())
    offsets = np.frombuffer(texts.buffers()[1], dtype=np.int64)[
        texts.offset : texts.offset + len(texts) + 1
    ]
    data = texts.buffers()[2]
    raw = np.frombuffer(data, dtype=np.uint8) if data is not None else np.zeros(0, np.uint8)
    starts = offsets[:-1]
    ends = np.minimum(offsets[1:], starts + MAX_SHINGLE_BYTES)
    return raw, np.stack([starts, ends], axis=1)


def shingle_hashes(texts: pa.Array, unit: str, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Hashed shingles of each text, flat, and each text's [offset, next offset) in them.

    ``unit`` "char": every run of ``size`` bytes of the UTF-8 text (``size`` <= 8); "word":
    every ``size`` consecutive space-separated words. A text shorter than one shingle is
    one shingle (itself), so no row has an empty set."""
    raw, spans = _buffer(texts)
    if unit == "char":
        tokens, counts = _byte_grams(raw, spans, size)
    else:
        tokens, counts = _word_grams(raw, spans, size)
    whole = counts == 0  # too short: the text itself is its one shingle
    if whole.any():
        rows = np.flatnonzero(whole)
        own = span_hashes(raw, spans[rows, 0], spans[rows, 1], _SALT)
        owner = np.concatenate([np.repeat(np.arange(len(counts)), counts), rows])
        tokens = np.concatenate([tokens, own])[np.argsort(owner, kind="stable")]
        counts = np.where(whole, 1, counts)
    offsets = np.zeros(len(counts) + 1, dtype=_U)
    np.cumsum(counts, out=offsets[1:])
    return tokens.astype(_U), offsets


def _byte_grams(raw: np.ndarray, spans: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    if not 1 <= size <= 8:
        raise UsageError(f"--ngram {size}: character shingles are 1 to 8 bytes")
    lengths = np.maximum(spans[:, 1] - spans[:, 0] - size + 1, 0)
    if not lengths.sum():
        return np.zeros(0, dtype=_U), lengths
    # positions of every shingle, row by row (each row's bytes are contiguous in raw)
    first = np.repeat(spans[:, 0] - np.cumsum(lengths) + lengths, lengths)
    positions = first + np.arange(int(lengths.sum()))
    key = np.zeros(len(positions), dtype=_U)
    for k in range(size):
        key |= raw[positions + k].astype(_U) << _U(8 * k)
    return mix64(key ^ _U(size << 56) ^ _SALT), lengths


def _word_spans(raw: np.ndarray, spans: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Start, end (exclusive) and row of every word: a run of non-space bytes inside one
    text's span (texts lie back to back in ``raw``; a word never crosses into the next)."""
    size = len(raw)
    depth = np.bincount(spans[:, 0], minlength=size + 1) - np.bincount(
        spans[:, 1], minlength=size + 1
    )
    word = (np.cumsum(depth)[:size] > 0) & (raw != 0x20)
    row_start = np.zeros(size + 1, dtype=bool)
    row_start[spans[:, 0]] = True
    before = np.r_[False, word[:-1]]
    after = np.r_[word[1:], False]
    begins = np.flatnonzero(word & (~before | row_start[:size]))
    ends = np.flatnonzero(word & (~after | row_start[1:])) + 1
    rows = np.searchsorted(spans[:, 0], begins, side="right") - 1
    return begins, ends, rows


def _word_grams(raw: np.ndarray, spans: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Words are the runs between spaces (the text is normalised first)."""
    if size < 1:
        raise UsageError(f"--ngram {size}: at least 1 word")
    starts, ends, word_rows = _word_spans(raw, spans)
    words = span_hashes(raw, starts, ends, _SALT)
    per_row = np.bincount(word_rows, minlength=len(spans))
    lengths = np.maximum(per_row - size + 1, 0)
    first_word = np.cumsum(per_row) - per_row
    base = np.repeat(first_word - (np.cumsum(lengths) - lengths), lengths)
    at = base + np.arange(int(lengths.sum()))
    gram = np.zeros(len(at), dtype=_U)
    for k in range(size):
        gram = mix64(gram * _U(0x9E3779B97F4A7C15) ^ words[at + k])
    return gram, lengths
