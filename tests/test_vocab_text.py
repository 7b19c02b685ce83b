"""Text in the same vocabulary (issue 15, section 7): livetok's ids after a text tokenizer's, its 32
special tokens as that tokenizer's added tokens; text and steps interleave in one sequence and come
back apart exactly. The text tokenizer is a small byte-level BPE this test trains itself (no download)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from namedgen import VOCAB2, named_step
from requires import require_module
from test_vocab_v2 import same

from livetok.errors import CodebookError, DecodeError
from livetok.vocab import FlatStep, Vocabulary

CORPUS = [
    "the camera sees a red ball rolling across the floor",
    "a dog barks twice, then the room is quiet again",
    "speech and video tokens share one sequence with the text around them",
    "Ünïcödé, emoji 🎥 and numbers 12345 must come back exactly",
] * 20


def train_bpe(vocab_size: int = 400) -> Any:
    """A byte-level BPE trained on CORPUS: any text encodes, and decodes back exactly."""
    tk = require_module("tokenizers")
    tok = tk.Tokenizer(tk.models.BPE(unk_token="[UNK]"))
    tok.pre_tokenizer = tk.pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = tk.decoders.ByteLevel()
    trainer = tk.trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["[UNK]", "<pad>"],
                                     initial_alphabet=tk.pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(CORPUS, trainer)
    return tok


@pytest.fixture(scope="module")
def text_and_vocab() -> tuple[Any, Vocabulary]:
    tok = train_bpe()
    vocab = VOCAB2.with_base(tok.get_vocab_size())
    assert tok.add_special_tokens(vocab.added_tokens()) == 32  # none of the names was there already
    vocab.check_text_tokenizer(tok)
    return tok, vocab


def test_text_steps_text_come_back_apart_exactly(text_and_vocab: tuple[Any, Vocabulary]) -> None:
    tok, vocab = text_and_vocab
    before, after = "Describe what <step> follows: the camera sees a dog", "Ünïcödé 🎥 — the end."
    steps = [named_step(0), named_step(1)]
    t1, t2 = tok.encode(before).ids, tok.encode(after).ids
    assert max(t1 + t2) < vocab.base  # the text is text ids only: "<step>" is not the token
    seq = np.concatenate([t1, vocab.flatten_steps(steps), t2])
    parts = vocab.split(seq)
    assert [type(p).__name__ for p in parts] == ["ndarray", "FlatStep", "FlatStep", "ndarray"]
    assert tok.decode(parts[0].tolist()) == before and tok.decode(parts[3].tolist()) == after
    for s, flat in zip(steps, parts[1:3], strict=True):
        assert isinstance(flat, FlatStep)
        same(s, flat)
    # the text tokenizer reads livetok's special ids by their names, and skips them as special tokens
    assert tok.encode("<|livetok:step|>").ids == [vocab.base + 1]
    assert tok.decode([*t1, vocab.base + 1], skip_special_tokens=False) == before + "<|livetok:step|>"
    assert tok.decode([*t1, vocab.base + 1]) == before


def test_a_step_written_as_its_names_in_text(text_and_vocab: tuple[Any, Vocabulary]) -> None:
    """Special ids written by name inside the text are the same ids: an empty step between two texts."""
    tok, vocab = text_and_vocab
    ids = tok.encode("left<|livetok:step|><|livetok:late|>right").ids
    parts = vocab.split(ids)
    assert len(parts) == 3 and isinstance(parts[1], FlatStep) and parts[1].packets == ()
    assert int(parts[1].flags) == 4  # LATE
    assert tok.decode(parts[0].tolist()) == "left" and tok.decode(parts[2].tolist()) == "right"


def test_a_mismatched_text_tokenizer_is_named(text_and_vocab: tuple[Any, Vocabulary]) -> None:
    tok, vocab = text_and_vocab
    with pytest.raises(CodebookError, match=r"gives <\|livetok:pad\|> the id \d+, this vocabulary 1"):
        vocab.with_base(1).check_text_tokenizer(tok)
    fresh = train_bpe()
    fresh.add_special_tokens(["<|livetok:late|>"])  # one of the names taken before the others
    base = fresh.get_vocab_size()
    assert fresh.add_special_tokens(vocab.added_tokens()) == 31  # the name it had keeps its id
    late = rf"gives <\|livetok:late\|> the id {base - 1}, this vocabulary {base + 13}"
    with pytest.raises(CodebookError, match=late):
        VOCAB2.with_base(base).check_text_tokenizer(fresh)


def test_split_refuses_what_is_not_text_or_steps(text_and_vocab: tuple[Any, Vocabulary]) -> None:
    _, vocab = text_and_vocab
    with pytest.raises(DecodeError, match="outside the vocabulary"):
        vocab.split([5, vocab.size])
    with pytest.raises(DecodeError, match="must start with <step>"):
        vocab.split([5, vocab.base + 2, 6])  # a packet marker right after text, no <step>
    with pytest.raises(DecodeError, match="a text id"):
        vocab.unflatten([vocab.base + 1, 5])  # unflatten takes steps only; split takes text too
    assert vocab.split([]) == [] and VOCAB2.split(VOCAB2.flatten(named_step(0)))[0] is not None
