"""The built-in example corpus: docstrings of the installed Python standard library.

Why this corpus: it exists on every machine that runs dataselect (no network, no download),
it is real prose written by many people, and it has natural clusters (string handling,
networking, concurrency, file formats...) and natural junk (one-line stubs, "Docstring"
placeholders), so every stage has something real to find.
"""

from __future__ import annotations

import ast
import inspect
import sysconfig
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from dataselect.errors import DataError
from dataselect.io.atomic import commit, temporary_path

MIN_CHARS = 20
_SKIP_DIRS = {"site-packages", "dist-packages", "test", "tests", "__pycache__", "idle_test"}


def stdlib_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def iter_docstrings(root: Path | None = None) -> Iterator[dict[str, str]]:
    """Yield {id, text, module, kind} for every docstring of at least MIN_CHARS characters."""
    root = root or stdlib_root()
    seen: set[str] = set()
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if any(part in _SKIP_DIRS for part in rel.parts):
            continue
        module = ".".join(rel.with_suffix("").parts).removesuffix(".__init__")
        try:
            tree = ast.parse(path.read_bytes(), filename=str(path))
        except (SyntaxError, ValueError, OSError):
            continue
        for qualname, kind, node in _documented(tree):
            doc = ast.get_docstring(node, clean=False)  # type: ignore[arg-type]
            if not doc:
                continue
            text = inspect.cleandoc(doc)
            row_id = f"{module}:{qualname}" if qualname else module
            if len(text) < MIN_CHARS or row_id in seen:
                continue
            seen.add(row_id)
            yield {"id": row_id, "text": text, "module": module, "kind": kind}


def _documented(tree: ast.Module) -> Iterator[tuple[str, str, ast.AST]]:
    yield "", "module", tree
    stack: list[tuple[str, ast.AST]] = [("", tree)]
    while stack:
        prefix, node = stack.pop(0)
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = f"{prefix}{child.name}"
                kind = "class" if isinstance(child, ast.ClassDef) else "function"
                yield name, kind, child
                stack.append((f"{name}.", child))


def write_example(output: str | Path, shards: int = 4, limit: int | None = None) -> int:
    """Write the corpus as a Parquet folder of ``shards`` files; returns the row count."""
    rows = list(iter_docstrings())
    if limit is not None:
        rows = rows[:limit]
    if not rows:
        raise DataError(f"no docstrings found under {stdlib_root()}")
    folder = Path(output)
    folder.mkdir(parents=True, exist_ok=True)
    schema = pa.schema([(n, pa.string()) for n in ("id", "text", "module", "kind")])
    per_shard = -(-len(rows) // shards)
    for i in range(shards):
        part = rows[i * per_shard : (i + 1) * per_shard]
        final = folder / f"docstrings-{i:05d}.parquet"
        tmp = temporary_path(final)
        pq.write_table(pa.Table.from_pylist(part, schema=schema), tmp, compression="zstd")
        commit(tmp, final)
    return len(rows)
