"""Randomness keyed by (seed, row id), never by processing order.

Every random choice about a row (is it in the k-means fit sample? in which order is it
drawn?) comes from a 64-bit hash of its id and the seed, so results do not depend on how
rows are sharded, ordered or spread over workers. Pure uint64 arithmetic: identical on every
machine and in every process (unlike Python's salted ``hash``).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_U = np.uint64
_P = 0x100000001B3  # odd multiplier of the polynomial byte-string hash
_P_INV = pow(_P, -1, 1 << 64)


def mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finalizer: turns structured uint64 keys into well-spread hashes."""
    x = x ^ (x >> _U(30))
    x = x * _U(0xBF58476D1CE4E5B9)
    x = x ^ (x >> _U(27))
    x = x * _U(0x94D049BB133111EB)
    return x ^ (x >> _U(31))


def seed_salt(seed: int, stream: int = 0) -> np.uint64:
    """A well-mixed 64-bit salt for one use (``stream``) of one seed."""
    key = np.array([(seed * 0x9E3779B97F4A7C15 + stream) & 0xFFFFFFFFFFFFFFFF], dtype=_U)
    return mix64(key)[0]


_POWER_CACHE_BYTES = 1 << 19  # span positions whose hash powers are kept (8 MB)


def _powers(length: int) -> tuple[np.ndarray, np.ndarray]:
    """P^i and P^-i for i in 0..length: cut from a cache built once, when they fit in it."""
    global _POWERS
    if length > _POWER_CACHE_BYTES:
        return _power_table(length)
    if _POWERS is None:
        _POWERS = _power_table(_POWER_CACHE_BYTES)
    return _POWERS[0][: length + 1], _POWERS[1][: length + 1]


def _power_table(length: int) -> tuple[np.ndarray, np.ndarray]:
    powers = np.empty(length + 1, dtype=_U)
    powers[0] = 1
    powers[1:] = _P
    inv = np.empty(length + 1, dtype=_U)
    inv[0] = 1
    inv[1:] = _P_INV
    return np.cumprod(powers, dtype=_U), np.cumprod(inv, dtype=_U)


_POWERS: tuple[np.ndarray, np.ndarray] | None = None


def span_raw_hashes(buf: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Unsalted, unmixed 64-bit hashes of the byte spans buf[starts[i]:ends[i]]: the costly
    part, shared by every salt (see ``salted``)."""
    if len(starts) == 0:
        return np.zeros(0, dtype=_U)
    powers, inv = _powers(len(buf))
    prefix = np.zeros(len(buf) + 1, dtype=_U)
    prefix[1:] = np.cumsum((buf.astype(_U) + _U(1)) * powers[:-1], dtype=_U)
    raw = (prefix[ends] - prefix[starts]) * inv[starts]
    return raw ^ ((ends - starts).astype(_U) << _U(56))


def salted(raw: np.ndarray, salt: np.uint64) -> np.ndarray:
    return mix64(raw ^ salt)


def span_hashes(
    buf: np.ndarray, starts: np.ndarray, ends: np.ndarray, salt: np.uint64
) -> np.ndarray:
    """64-bit hashes of the byte spans buf[starts[i]:ends[i]], all at once."""
    return salted(span_raw_hashes(buf, starts, ends), salt)


KEY_CHUNK_ROWS = 1 << 15  # string ids hashed this many at a time: the hash's work arrays
# hold 24 bytes per id byte, so hashing 10M ids at once would need gigabytes


def row_keys(ids: pa.Array, seed: int, stream: int = 0) -> np.ndarray:
    """A uniform 64-bit key per row id (string or int64) for this seed and use."""
    return row_keys_streams(ids, seed, (stream,))[0]


def row_keys_streams(ids: pa.Array, seed: int, streams: tuple[int, ...]) -> list[np.ndarray]:
    """``row_keys`` for several uses at once: a string id's bytes are hashed once."""
    salts = [seed_salt(seed, stream) for stream in streams]
    if isinstance(ids, pa.ChunkedArray):
        ids = ids.combine_chunks()
    if pa.types.is_integer(ids.type):
        values = ids.cast(pa.int64()).to_numpy(zero_copy_only=False).view(_U)
        return [mix64(mix64(values ^ salt) ^ _U(0x632BE59BD9B4E019)) for salt in salts]
    keys = [np.empty(len(ids), dtype=_U) for _ in salts]
    step = KEY_CHUNK_ROWS
    if len(ids) and pa.types.is_string(ids.type):  # keep a chunk's bytes in the power cache
        offsets = np.frombuffer(ids.buffers()[1], dtype=np.int32)[ids.offset :]
        mean = (int(offsets[len(ids)]) - int(offsets[0])) / len(ids)
        step = int(max(1, min(KEY_CHUNK_ROWS, _POWER_CACHE_BYTES // (2 * mean + 1))))
    for start in range(0, len(ids), step):
        chunk = ids.slice(start, step)
        raw = _string_raw(chunk)
        for out, salt in zip(keys, salts, strict=True):
            out[start : start + len(chunk)] = salted(raw, salt)
    return keys


def _string_raw(ids: pa.Array) -> np.ndarray:
    strings = ids.cast(pa.large_string()) if not pa.types.is_large_string(ids.type) else ids
    strings = pa.concat_arrays([strings]) if strings.offset else strings  # drop slice offset
    offsets_buf, data_buf = strings.buffers()[1], strings.buffers()[2]
    offsets = np.frombuffer(offsets_buf, dtype=np.int64)[: len(strings) + 1]
    data = (
        np.frombuffer(data_buf, dtype=np.uint8) if data_buf is not None else np.zeros(0, np.uint8)
    )
    # only this chunk's bytes: a slice (or a cast of one) shares the whole array's buffer
    data, offsets = data[offsets[0] : offsets[-1]], offsets - offsets[0]
    return span_raw_hashes(data, offsets[:-1], offsets[1:])


class IdSet:
    """Fast membership in a fixed set of ids, batch after batch.

    ``pc.is_in`` hashes its whole value set on every call, which made the sample stage's
    passes cost O(batches x selected rows). Here the set is hashed once (keyed hashes,
    sorted); a batch costs its own hashes and a binary search, and every hash match is
    confirmed on the ids themselves, so two ids sharing a hash never pass for each other.
    """

    def __init__(self, ids: pa.Array | pa.ChunkedArray) -> None:
        if isinstance(ids, pa.ChunkedArray):
            ids = ids.combine_chunks()
        keys = row_keys(ids, 0, _ID_SET_STREAM)
        order = np.argsort(keys, kind="stable")
        self.keys = keys[order]
        self.ids = ids.take(pa.array(order))
        # a byte table on the hashes' top bits turns most non-members away with one lookup
        # before the binary search (about 8 bytes per member, like the keys themselves)
        bits = int(np.clip(np.ceil(np.log2(max(8 * len(keys), 1))), 16, 27))
        self.shift = _U(64 - bits)
        self.table = np.zeros(1 << bits, dtype=bool)
        self.table[self.keys >> self.shift] = True
        # ids of the set that share a hash (rare): looked up among themselves, exactly
        same = self.keys[1:] == self.keys[:-1]
        self.shared_keys = np.unique(self.keys[1:][same])
        self.shared_ids = self.ids.filter(pa.array(np.isin(self.keys, self.shared_keys)))

    def __len__(self) -> int:
        return len(self.ids)

    def contains(self, ids: pa.Array | pa.ChunkedArray) -> np.ndarray:
        """A bool per id: is it in the set?"""
        if isinstance(ids, pa.ChunkedArray):
            ids = ids.combine_chunks()
        if not len(self.keys) or not len(ids):
            return np.zeros(len(ids), dtype=bool)
        if ids.type != self.ids.type:
            ids = ids.cast(self.ids.type)
        keys = row_keys(ids, 0, _ID_SET_STREAM)
        hit = np.zeros(len(keys), dtype=bool)
        maybe = np.flatnonzero(self.table[keys >> self.shift])
        at = np.minimum(np.searchsorted(self.keys, keys[maybe]), len(self.keys) - 1)
        match = self.keys[at] == keys[maybe]
        where, at = maybe[match], at[match]
        if len(where):
            same = pc.equal(ids.take(pa.array(where)), self.ids.take(pa.array(at)))
            hit[where] = same.to_numpy(zero_copy_only=False)
        if len(self.shared_keys):
            where = np.flatnonzero(np.isin(keys, self.shared_keys))
            found = pc.is_in(ids.take(pa.array(where)), value_set=self.shared_ids)
            hit[where] = found.to_numpy(zero_copy_only=False)
        return hit


_ID_SET_STREAM = 0x1D5E7  # the set's own hash use: independent of every sampling stream


def vector_hashes(vectors: np.ndarray) -> np.ndarray:
    """XXH3-64 of each row's float32 bytes: equal vectors, equal hashes, on every machine;
    two different vectors collide with probability about 2^-64. (Per row through xxhash:
    about 3M rows/s of 384 floats, 7x a vectorised numpy hash, which had to widen every
    float to 64 bits.)"""
    import xxhash

    rows = np.ascontiguousarray(vectors, dtype=np.float32)
    width = rows.shape[1] * 4
    data = memoryview(rows.reshape(-1).view(np.uint8).data)
    digest = xxhash.xxh3_64_intdigest
    return np.fromiter(
        (digest(data[i * width : (i + 1) * width]) for i in range(len(rows))),
        dtype=np.uint64,
        count=len(rows),
    )
