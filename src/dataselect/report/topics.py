"""What a cluster is about: its top terms by class-based TF-IDF, as BERTopic computes them.

All of a cluster's texts are one document. A term's weight in cluster c is its frequency in c
(each cluster's counts normalised to sum to 1) times log(1 + A / f), where f is the term's
count over all clusters and A the mean number of words per cluster: common words everywhere
weigh little, words that mark one cluster weigh much. Counting is scikit-learn's
CountVectorizer (English stop words out, words of two letters or more, no digits).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

TERMS_PER_CLUSTER = 6
WORD_PATTERN = r"(?u)\b[^\W\d_]{2,}\b"  # words of two letters or more: no numbers, no "_"


def top_terms(
    texts_by_cluster: Mapping[int, Sequence[str]], terms: int = TERMS_PER_CLUSTER
) -> dict[int, list[str]]:
    """The ``terms`` highest-weighted terms of each cluster (ties in alphabetical order); a
    cluster with no word gets an empty list."""
    from sklearn.feature_extraction.text import CountVectorizer

    clusters = sorted(texts_by_cluster)
    documents = ["\n".join(texts_by_cluster[c]) for c in clusters]
    vectorizer = CountVectorizer(stop_words="english", token_pattern=WORD_PATTERN)
    try:
        counts = vectorizer.fit_transform(documents).astype(np.float64).tocsr()
    except ValueError:  # no word in any text (empty vocabulary)
        return {c: [] for c in clusters}
    vocabulary = vectorizer.get_feature_names_out()  # sorted: ties resolve alphabetically
    words_per_cluster = np.asarray(counts.sum(axis=1)).ravel()
    frequency = np.asarray(counts.sum(axis=0)).ravel()
    idf = np.log1p(words_per_cluster.mean() / frequency)
    out: dict[int, list[str]] = {}
    for row, cluster in enumerate(clusters):
        start, end = counts.indptr[row], counts.indptr[row + 1]
        columns = counts.indices[start:end]
        if not len(columns):
            out[cluster] = []
            continue
        weights = counts.data[start:end] / words_per_cluster[row] * idf[columns]
        order = np.lexsort((columns, -weights))[:terms]  # by weight, then by term
        out[cluster] = [str(vocabulary[columns[i]]) for i in order]
    return out
