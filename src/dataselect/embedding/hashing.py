"""A model-free text embedder: hashed word and byte n-grams, weighted, sketched to ``dim``.

Why: it needs no model, no network and no GPU, is deterministic to the bit on any machine,
and runs at tens of thousands of short texts per second per core, so pipelines, tests and
demos can run anywhere. It captures lexical similarity (shared words, morphology, phrases),
not meaning; use ``minilm`` where semantics matter.

Features of the lower-cased text, per row:
- words: runs of ASCII letters/digits or non-ASCII bytes; English stop words dropped;
  weight 1.0 for unigrams and 0.5 for bigrams of adjacent words;
- byte n-grams, n = 3, 4, 5, of the UTF-8 text (spaces included, so they span word edges).
Each distinct feature gets the sublinear term weight 1 + ln(count). The two channels
(words, n-grams) are each projected to ``dim`` by a signed feature hash (a count sketch,
an unbiased random projection of the sparse vector), L2-normalised, added with equal weight
and normalised again. A row with no feature (empty text) gets a fixed unit vector; only
the first MiB of a text is hashed.
All hashing is integer arithmetic on uint64 (no Python ``hash``), so outputs are identical
across processes and machines; the seed salts every hash.
"""

from __future__ import annotations

import math

import numpy as np

from dataselect.keyed import mix64, span_hashes

_U = np.uint64
# sort keys are uint32: row in chunk (13 bits) | channel bit | bigram bit | feature hash (17)
_ROW_SHIFT = 19
_FEATURE_MASK = (1 << _ROW_SHIFT) - 1
_CHANNEL_BIT = 1 << 18
_BIGRAM_BIT = 1 << 17
_HASH_BITS = 17
_ROWS_PER_CHUNK = 1 << 13
_BIGRAM_WEIGHT = 0.5
_NGRAM_SIZES = (3, 4, 5)
_BYTES_PER_CHUNK = 1 << 15  # small chunks stay in cache: 32 KiB ran 2x faster than 1 MiB
_MAX_TEXT_BYTES = 1 << 20  # only a text's first MiB is hashed (bounds memory per row)

_IS_WORD = np.zeros(256, dtype=bool)
for _c in b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789":
    _IS_WORD[_c] = True
_IS_WORD[0x80:] = True


class HashingEmbedder:
    """Deterministic hashed n-gram embeddings; see the module docstring for the recipe."""

    name = "hashing"

    def __init__(self, dim: int = 384, seed: int = 0) -> None:
        if dim < 8:
            raise ValueError("dim must be at least 8")
        self.dim = dim
        self.seed = seed
        salt = mix64(np.array([seed & 0xFFFFFFFFFFFFFFFF, 0x9E3779B97F4A7C15], dtype=_U))
        self._salt_word, self._salt_gram = salt[0], salt[1]
        from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

        self._stop = np.sort(self._word_hashes(sorted(ENGLISH_STOP_WORDS)))
        self._empty = self._fallback_vector()

    def identity(self) -> dict[str, object]:
        return {"embedder": self.name, "dim": self.dim, "recipe": 1}

    def embed(self, texts: list[str]) -> np.ndarray:
        """Unit-norm float32 vectors, one row per text; rows do not depend on their batch."""
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        start = 0
        while start < len(texts):
            stop, size = start, 0
            while stop < len(texts) and (
                stop == start or (size < _BYTES_PER_CHUNK and stop - start < _ROWS_PER_CHUNK)
            ):
                size += len(texts[stop])
                stop += 1
            out[start:stop] = self._embed_chunk(texts[start:stop])
            start = stop
        return out

    # -- internals ---------------------------------------------------------------------
    def _embed_chunk(self, texts: list[str]) -> np.ndarray:
        n = len(texts)
        encoded = [t.lower().encode("utf-8")[:_MAX_TEXT_BYTES] for t in texts]
        lens = np.fromiter(map(len, encoded), dtype=np.int64, count=n)
        buf = np.frombuffer(b"".join(encoded), dtype=np.uint8)
        ends = np.cumsum(lens)
        doc_of = np.repeat(np.arange(n, dtype=np.int64), lens)
        end_of = np.repeat(ends, lens)

        gram_doc, gram_hash = self._ngram_features(buf, doc_of, end_of)
        word_doc, word_hash = self._word_features(buf, doc_of, end_of)
        # one sort of uint32 keys finds the distinct (row, feature) pairs; run lengths are
        # their counts (features are 17-bit hashes: rare merges inside a row are harmless)
        keys = np.concatenate(
            [
                (gram_doc.astype(np.uint32) << np.uint32(_ROW_SHIFT))
                | (gram_hash >> _U(64 - _HASH_BITS)).astype(np.uint32),
                (word_doc.astype(np.uint32) << np.uint32(_ROW_SHIFT))
                | word_hash.astype(np.uint32)
                | np.uint32(_CHANNEL_BIT),
            ]
        )
        keys.sort()
        first = np.ones(len(keys), dtype=bool)
        first[1:] = keys[1:] != keys[:-1]
        starts = np.flatnonzero(first)
        counts = np.diff(np.append(starts, len(keys)))
        uniq = keys[starts]
        doc = (uniq >> np.uint32(_ROW_SHIFT)).astype(np.int64)
        feature = uniq & np.uint32(_FEATURE_MASK)
        is_word = (feature & np.uint32(_CHANNEL_BIT)) != 0
        base = np.where((feature & np.uint32(_BIGRAM_BIT)) != 0, _BIGRAM_WEIGHT, 1.0)
        weight = base * (1.0 + np.log(counts))
        bucket = ((feature >> np.uint32(1)) % np.uint32(self.dim)).astype(np.int64)
        signed = np.where((feature & np.uint32(1)) == 1, weight, -weight)

        vectors = np.zeros((n, self.dim))
        for mask in (is_word, ~is_word):
            part = np.bincount(
                doc[mask] * self.dim + bucket[mask], weights=signed[mask], minlength=n * self.dim
            ).reshape(n, self.dim)
            norms = np.linalg.norm(part, axis=1, keepdims=True)
            vectors += part / np.where(norms > 0, norms, 1.0)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        vectors = vectors / np.where(norms > 0, norms, 1.0)
        vectors[norms[:, 0] == 0] = self._empty
        return vectors.astype(np.float32)

    def _ngram_features(
        self, buf: np.ndarray, doc_of: np.ndarray, end_of: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        total = len(buf)
        wide = buf.astype(_U)
        docs, hashes = [], []
        key = np.zeros(total, dtype=_U)
        for k in range(max(_NGRAM_SIZES)):
            count = total - k
            if count <= 0:
                break
            key = key[:count] | (wide[k:] << _U(8 * k))
            n = k + 1
            if n in _NGRAM_SIZES:
                pos = np.arange(count)
                valid = pos + n <= end_of[:count]
                docs.append(doc_of[:count][valid])
                hashes.append(mix64(key[valid] ^ _U(n << 56) ^ self._salt_gram))
        if not docs:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=_U)
        return np.concatenate(docs), np.concatenate(hashes)

    def _word_features(
        self, buf: np.ndarray, doc_of: np.ndarray, end_of: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Rows and 17-bit hashes of words (stop words dropped) and adjacent-word bigrams."""
        starts, ends = _word_spans(buf, end_of)
        hashes = self._span_hashes(buf, starts, ends)
        docs = doc_of[starts]
        keep = ~np.isin(hashes, self._stop)
        bigram = (docs[1:] == docs[:-1]) & (keep[1:] | keep[:-1])
        bigram_hash = mix64(hashes[:-1] * _U(0x9E3779B97F4A7C15) ^ hashes[1:])
        all_docs = np.concatenate([docs[keep], docs[1:][bigram]])
        shift = _U(64 - _HASH_BITS)
        all_hashes = np.concatenate(
            [hashes[keep] >> shift, (bigram_hash[bigram] >> shift) | _U(_BIGRAM_BIT)]
        )
        return all_docs, all_hashes

    def _span_hashes(self, buf: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
        return span_hashes(buf, starts, ends, self._salt_word)

    def _word_hashes(self, words: list[str]) -> np.ndarray:
        encoded = [w.encode() for w in words]
        lens = np.fromiter(map(len, encoded), dtype=np.int64, count=len(words))
        buf = np.frombuffer(b" ".join(encoded), dtype=np.uint8)
        starts = np.concatenate([[0], np.cumsum(lens + 1)[:-1]])
        return self._span_hashes(buf, starts, starts + lens)

    def _fallback_vector(self) -> np.ndarray:
        rng = np.random.default_rng(self.seed)
        v = rng.standard_normal(self.dim)
        return v / math.sqrt(float(v @ v))


def _word_spans(buf: np.ndarray, end_of: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start and end (exclusive) byte offsets of words; words never cross row boundaries."""
    total = len(buf)
    if total == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty
    word = _IS_WORD[buf]
    row_start = np.zeros(total, dtype=bool)
    starts_of_rows = np.unique(end_of)[:-1]
    row_start[0] = True
    row_start[starts_of_rows[starts_of_rows < total]] = True
    prev = np.concatenate([[False], word[:-1]])
    begins = word & (~prev | row_start)
    row_end = np.zeros(total, dtype=bool)
    row_end[end_of[(end_of - 1) >= 0] - 1] = True
    nxt = np.concatenate([word[1:], [False]])
    finishes = word & (~nxt | row_end)
    return np.flatnonzero(begins), np.flatnonzero(finishes) + 1
