"""Token ids of ASCII texts for BERT's WordPiece tokenizer, a word at a time from a cache.

The static embedder's time is almost all tokenising: the tokenizers library runs its whole
pipeline per text (normalised string with alignments, pre-tokens, an Encoding object),
about 24 us of core time for a 60-character text. For ASCII text, BERT's pipeline reduces
to: lower-case, split on whitespace, each ASCII punctuation character a word of its own,
then WordPiece on each word, which depends on the word alone. So a text's ids are its
words' ids concatenated, and a corpus has few distinct words: each is tokenised once (by
the tokenizer itself, in batches) and looked up after.

Used only where that is exact: a tokenizer of BertNormalizer (lower-casing), BertPreTokenizer
and WordPiece; texts that are ASCII, hold no control character (the normaliser deletes them,
joining words) and no added token's text (matched before normalising). Every other text is
tokenised by the tokenizer as before. The equality is tested on random ASCII texts and on
the real corpora.
"""

from __future__ import annotations

import json
import re
from typing import Any

# BERT's ASCII punctuation: 33-47, 58-64, 91-96, 123-126 (each its own word)
_PUNCTUATION = r"!-/:-@\[-`{-~"
_WORDS = re.compile(rf"[^\s{_PUNCTUATION}]+|[{_PUNCTUATION}]")
# what BertNormalizer's clean_text deletes (\t, \n and \r are whitespace)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
CACHED_WORDS = 500_000  # the cache is emptied when it holds more (a few tens of MB)


class CachedWordPieces:
    """``ids(texts)``: each text's token ids, without special tokens, cut at ``max_length``
    tokens, as ``tokenizer.encode_batch_fast(texts, add_special_tokens=False)`` gives them."""

    def __init__(self, tokenizer: Any, max_length: int | None) -> None:
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.words: dict[str, list[int]] = {}
        added = tokenizer.get_added_tokens_decoder().values()
        self.added = [token.content.lower() for token in added if token.content]

    @staticmethod
    def applies_to(tokenizer: Any) -> bool:
        """Whether the tokenizer is BERT's lower-casing WordPiece pipeline (the only one
        whose ASCII ids this reproduces)."""
        spec = json.loads(tokenizer.to_str())
        normalizer = spec.get("normalizer") or {}
        return (
            normalizer.get("type") == "BertNormalizer"
            and normalizer.get("lowercase") is True
            and (spec.get("pre_tokenizer") or {}).get("type") == "BertPreTokenizer"
            and (spec.get("model") or {}).get("type") == "WordPiece"
        )

    def ids(self, texts: list[str]) -> list[list[int]]:
        words: list[list[str] | None] = [self._words(text) for text in texts]
        self._learn({w for split in words if split is not None for w in split})
        others = [text for text, split in zip(texts, words, strict=True) if split is None]
        tokenised = iter(self.tokenizer.encode_batch_fast(others, add_special_tokens=False))
        out = []
        for split in words:
            if split is None:
                out.append(next(tokenised).ids)
                continue
            ids = [i for word in split for i in self.words[word]]
            out.append(ids if self.max_length is None else ids[: self.max_length])
        return out

    def _words(self, text: str) -> list[str] | None:
        """The text's words, or None where the cache cannot be used for it."""
        if not text.isascii() or _CONTROL.search(text):
            return None
        lower = text.lower()
        if any(token in lower for token in self.added):
            return None
        return _WORDS.findall(lower)

    def _learn(self, words: set[str]) -> None:
        """Tokenise the words not yet cached, in one batch."""
        new = sorted(word for word in words if word not in self.words)
        if not new:
            return
        if len(self.words) + len(new) > CACHED_WORDS:
            self.words.clear()
            new = sorted(words)
        encoded = self.tokenizer.encode_batch_fast(new, add_special_tokens=False)
        self.words.update(zip(new, (e.ids for e in encoded), strict=True))
