"""Randomness keyed by (seed, row id), never by processing order.

Every random choice about a row (is it in the k-means fit sample? in which order is it
drawn?) comes from a 64-bit hash of its id and the seed, so results do not depend on how
rows are sharded, ordered or spread over workers. Pure uint64 arithmetic: identical on every
machine and in every process (unlike Python's salted ``hash``).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

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


def span_hashes(
    buf: np.ndarray, starts: np.ndarray, ends: np.ndarray, salt: np.uint64
) -> np.ndarray:
    """64-bit hashes of the byte spans buf[starts[i]:ends[i]], all at once."""
    if len(starts) == 0:
        return np.zeros(0, dtype=_U)
    powers = np.empty(len(buf) + 1, dtype=_U)
    powers[0] = 1
    powers[1:] = _P
    powers = np.cumprod(powers, dtype=_U)
    inv = np.empty(len(buf) + 1, dtype=_U)
    inv[0] = 1
    inv[1:] = _P_INV
    inv = np.cumprod(inv, dtype=_U)
    prefix = np.zeros(len(buf) + 1, dtype=_U)
    prefix[1:] = np.cumsum((buf.astype(_U) + _U(1)) * powers[:-1], dtype=_U)
    raw = (prefix[ends] - prefix[starts]) * inv[starts]
    lengths = (ends - starts).astype(_U)
    return mix64(raw ^ (lengths << _U(56)) ^ salt)


KEY_CHUNK_ROWS = 1 << 16  # string ids hashed this many at a time: the hash's work arrays
# hold 24 bytes per id byte, so hashing 10M ids at once would need gigabytes


def row_keys(ids: pa.Array, seed: int, stream: int = 0) -> np.ndarray:
    """A uniform 64-bit key per row id (string or int64) for this seed and use."""
    salt = seed_salt(seed, stream)
    if isinstance(ids, pa.ChunkedArray):
        ids = ids.combine_chunks()
    if pa.types.is_integer(ids.type):
        values = ids.cast(pa.int64()).to_numpy(zero_copy_only=False).view(_U)
        return mix64(mix64(values ^ salt) ^ _U(0x632BE59BD9B4E019))
    keys = np.empty(len(ids), dtype=_U)
    for start in range(0, len(ids), KEY_CHUNK_ROWS):
        chunk = ids.slice(start, KEY_CHUNK_ROWS)
        keys[start : start + len(chunk)] = _string_keys(chunk, salt)
    return keys


def _string_keys(ids: pa.Array, salt: np.uint64) -> np.ndarray:
    strings = ids.cast(pa.large_string()) if not pa.types.is_large_string(ids.type) else ids
    strings = pa.concat_arrays([strings]) if strings.offset else strings  # drop slice offset
    offsets_buf, data_buf = strings.buffers()[1], strings.buffers()[2]
    offsets = np.frombuffer(offsets_buf, dtype=np.int64)[: len(strings) + 1]
    data = (
        np.frombuffer(data_buf, dtype=np.uint8) if data_buf is not None else np.zeros(0, np.uint8)
    )
    # only this chunk's bytes: a slice (or a cast of one) shares the whole array's buffer
    data, offsets = data[offsets[0] : offsets[-1]], offsets - offsets[0]
    return span_hashes(data, offsets[:-1], offsets[1:], salt)
