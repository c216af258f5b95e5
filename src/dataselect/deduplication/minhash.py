"""Near duplicates by MinHash LSH: signatures by rensa (R-MinHash in Rust, from flat
shingle hashes), candidates by datasketch's MinHashLSH, each candidate pair then kept only
when its estimated Jaccard similarity (the share of equal signature slots) reaches the
threshold.

Two libraries because neither does both: rensa computes 128-slot signatures about 30x
faster than datasketch, but its LSH index answers queries only for its own sketch objects;
datasketch's index takes any signature (measured: scripts/bench/dedup.py). Signatures are
kept in a memory-mapped temporary file (``num_perm`` x 4 bytes a row, unlinked at once, so
a crash leaves nothing), the index in memory."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from dataselect.deduplication.text import shingle_hashes

LSH_BATCH = 4096  # rows inserted or queried per datasketch session / loop


class Signatures:
    """The MinHash signature of every row, by row number, spilled to a temporary file."""

    def __init__(self, rows: int, num_perm: int, seed: int, folder: Path) -> None:
        self.num_perm = num_perm
        self.seed = seed
        self._file = tempfile.TemporaryFile(dir=folder, prefix=".dedup-signatures-")
        self.matrix = np.memmap(self._file, dtype=np.uint32, mode="w+",
                                shape=(max(rows, 1), num_perm))  # fmt: skip

    def add(self, start: int, texts: pa.Array, unit: str, size: int) -> None:
        """Signatures of ``texts`` (normalised) as rows start, start+1, ..."""
        self.matrix[start : start + len(texts)] = signatures(
            texts, unit, size, self.num_perm, self.seed
        )

    def close(self) -> None:
        del self.matrix
        self._file.close()


def signatures(texts: pa.Array, unit: str, size: int, num_perm: int, seed: int) -> np.ndarray:
    """(len(texts), num_perm) uint32 MinHash signatures of the texts' shingles."""
    import rensa

    if len(texts) == 0:
        return np.zeros((0, num_perm), dtype=np.uint32)
    tokens, offsets = shingle_hashes(texts, unit, size)
    matrix = rensa.RMinHash.digest_matrix_from_flat_token_hashes(tokens, offsets, num_perm, seed)
    return np.asarray(matrix.to_rows(), dtype=np.uint32).reshape(len(texts), num_perm)


def candidate_pairs(
    matrix: np.ndarray, rows: np.ndarray, threshold: float, queries: np.ndarray | None = None
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Pairs (a, b, estimated Jaccard >= threshold) among ``rows`` of ``matrix`` (row
    numbers), in batches; with ``queries``, pairs of a query row and an indexed row.

    datasketch chooses the bands (b bands of r slots) for the threshold; the index is built
    for two bands at a time (a two-band MinHashLSH over their slots: datasketch wants two at
    least), so it holds two bands of every row, not b: datasketch keeps each band's key in
    Python dicts, several hundred bytes a row a band. A pair found in several bands is given
    once for each (the verdicts do not depend on it)."""
    from datasketch import MinHashLSH

    bands, slots = _bands(threshold, matrix.shape[1])
    asked = rows if queries is None else queries
    for first in range(0, bands, 2):
        pair = [first, min(first + 1, bands - 1)]  # an odd last band is indexed twice
        part = np.concatenate([np.arange(b * slots, (b + 1) * slots) for b in pair])
        lsh = MinHashLSH(num_perm=2 * slots, params=(2, slots))
        with lsh.insertion_session(buffer_size=LSH_BATCH) as session:
            for row in rows.tolist():
                session.insert(row, _sketch(matrix[row, part]), check_duplication=False)
        for start in range(0, len(asked), LSH_BATCH):
            a_list: list[int] = []
            b_list: list[int] = []
            for row in asked[start : start + LSH_BATCH].tolist():
                for other in lsh.query(_sketch(matrix[row, part])):
                    if other != row and (queries is not None or other < row):
                        a_list.append(row)
                        b_list.append(other)
            if a_list:
                yield _verified(matrix, a_list, b_list, threshold)
        del lsh


def _bands(threshold: float, num_perm: int) -> tuple[int, int]:
    """The (bands, slots per band) datasketch picks for ``threshold``: it weighs false
    positives and false negatives equally."""
    from datasketch import MinHashLSH

    chosen = MinHashLSH(threshold=threshold, num_perm=num_perm)
    return int(chosen.b), int(chosen.r)


def _sketch(values: np.ndarray) -> Any:
    from datasketch import LeanMinHash

    return LeanMinHash(seed=0, hashvalues=values.astype(np.uint64), scheme="legacy")


def _verified(
    matrix: np.ndarray, a_list: list[int], b_list: list[int], threshold: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The candidate pairs whose estimated Jaccard (share of equal slots) is >= threshold."""
    a, b = np.asarray(a_list, dtype=np.int64), np.asarray(b_list, dtype=np.int64)
    similarity = (matrix[a] == matrix[b]).mean(axis=1, dtype=np.float32)
    near = similarity >= threshold
    return a[near], b[near], similarity[near]
