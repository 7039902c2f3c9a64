"""Word-level tokenizers for the reference models, trained locally with ``tokenizers``.

Text is split on whitespace (kept as a ``▁`` word-start marker, like SentencePiece) and on
punctuation, so decoding reproduces the original spacing exactly: ``"I'm sorry, I can't."``
round-trips through ``▁I ' m ▁sorry , ▁I ▁can ' t .``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<s>", "</s>"
IMAGE_TOKEN = "<image>"


def build_word_tokenizer(
    corpus: Iterable[str],
    *,
    lowercase: bool,
    extra_special: tuple[str, ...] = (),
    add_bos_eos: bool = True,
    model_max_length: int = 64,
    min_frequency: int = 1,
) -> Any:
    """Train a word-level tokenizer on ``corpus`` and wrap it as ``PreTrainedTokenizerFast``.

    Ids: ``<pad>`` 0, ``<unk>`` 1, ``<s>`` 2, ``</s>`` 3, then ``extra_special``, then words in
    frequency order (ties alphabetical: deterministic).
    """
    import importlib

    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers
    from tokenizers.processors import TemplateProcessing
    from tokenizers.trainers import WordLevelTrainer

    tf: Any = importlib.import_module("transformers")

    specials = [PAD, UNK, BOS, EOS, *extra_special]
    tok = Tokenizer(models.WordLevel(vocab={}, unk_token=UNK))
    norms: list[Any] = [normalizers.NFKC()]
    if lowercase:
        norms.append(normalizers.Lowercase())
    norms.append(normalizers.Replace(Regex(r"\s+"), " "))
    tok.normalizer = normalizers.Sequence(norms)
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True),
            pre_tokenizers.Split(Regex(r"[^\w▁]"), behavior="isolated"),
            pre_tokenizers.Split(Regex(r"\d"), behavior="isolated"),
        ]
    )
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    trainer = WordLevelTrainer(special_tokens=specials, min_frequency=min_frequency)
    tok.train_from_iterator(sorted(set(corpus)), trainer=trainer)
    if add_bos_eos:
        tok.post_processor = TemplateProcessing(
            single=f"{BOS} $A {EOS}",
            pair=f"{BOS} $A {EOS} $B {EOS}",
            special_tokens=[(BOS, tok.token_to_id(BOS)), (EOS, tok.token_to_id(EOS))],
        )
    fast = tf.PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        model_max_length=model_max_length,
        additional_special_tokens=list(extra_special) or None,
    )
    return fast
