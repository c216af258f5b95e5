"""Fits that give the same bytes whatever the machine's thread count.

BLAS reductions (a dot product over many rows, the gradient sums of an L-BFGS fit) add in an
order that depends on how many threads share them, so a probe fitted with 2 BLAS threads
differs from one fitted with 1 in the last bits, and so do the scores made from it (measured:
label-agreement and influence models and scores, and a kmq selection over them, differed
between OPENBLAS_NUM_THREADS=1 and 2). Row-wise products (a batch of rows times a weight
matrix, FAISS searches) do not: each output is one dot product over the vector's dimensions,
computed the same way by any thread. So every fit runs with one BLAS thread. That costs
little: the fits are small (at most a keyed sample of 50,000 rows), and one thread was
faster on a busy 2-core machine (an iterative probe fit: 4.6 s against 29 s with the
default threads, which then wait on each other).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import ParamSpec, TypeVar

from threadpoolctl import threadpool_limits

P = ParamSpec("P")
R = TypeVar("R")


def one_blas_thread(function: Callable[P, R]) -> Callable[P, R]:
    """Run ``function`` with BLAS (OpenBLAS, MKL) limited to one thread, then restore it.
    For fits made on the stage's main thread, never while shards run on a thread pool."""

    @wraps(function)
    def pinned(*args: P.args, **kwargs: P.kwargs) -> R:
        # scipy brings its own OpenBLAS (L-BFGS-B, scikit-learn's solvers use it): load it
        # first, or a limit set before its first import does not reach it
        import scipy.linalg  # noqa: F401

        with threadpool_limits(limits=1, user_api="blas"):
            return function(*args, **kwargs)

    return pinned
