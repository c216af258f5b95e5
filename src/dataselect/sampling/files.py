"""The artifacts a selection folder keeps beside its shards, by name (``artifact_path`` finds
them: ``_selection.json``, ``__artifacts__/decisions.parquet``, ``__artifacts__/pulls.parquet``).
A module of its own so readers (eval, report) need not import the sampling stage."""

DECISIONS = "decisions.parquet"  # every row: id, cluster, score, selected, reason
SELECTION = "selection.json"  # parameters, counts per cluster, metrics
PULLS = "pulls.parquet"  # the bandit's pull log
