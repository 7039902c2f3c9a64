from __future__ import annotations

from vlmtrust.reference._tokenizer import IMAGE_TOKEN, build_word_tokenizer
from vlmtrust.reference.train_vlm import COMPLIANCE, REFUSAL, build_processor


def test_word_tokenizer_round_trips_answers_exactly():
    corpus = [REFUSAL, COMPLIANCE, "The email address is ada.park@example.com.", "USER: ASSISTANT:"]
    tok = build_word_tokenizer(
        corpus, lowercase=False, extra_special=(IMAGE_TOKEN,), add_bos_eos=False
    )
    for text in corpus[:3]:
        ids = tok(text)["input_ids"]
        assert tok.unk_token_id not in ids
        assert tok.decode(ids, skip_special_tokens=True) == text
    assert tok("never seen words")["input_ids"] == [tok.unk_token_id] * 3
    assert tok.convert_tokens_to_ids(IMAGE_TOKEN) == 4


def test_clip_tokenizer_lowercases_and_wraps_with_bos_eos():
    tok = build_word_tokenizer(["a photo of a circle"], lowercase=True)
    ids = tok("A Photo of a CIRCLE")["input_ids"]
    assert ids[0] == tok.bos_token_id and ids[-1] == tok.eos_token_id
    assert tok.unk_token_id not in ids and len(ids) == 7


def test_chat_template_renders_llava_layout():
    tok = build_word_tokenizer(
        ["USER: ASSISTANT: SYSTEM:"],
        lowercase=False,
        extra_special=(IMAGE_TOKEN,),
        add_bos_eos=False,
    )
    proc = build_processor(tok)
    msgs = [
        {"role": "system", "content": [{"type": "text", "text": "Be careful."}]},
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What shape?"}]},
        {"role": "assistant", "content": "A star."},
        {"role": "user", "content": "And now?"},
    ]
    text = proc.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
    assert text == (
        "SYSTEM: Be careful.\nUSER:<image> What shape?\nASSISTANT: A star.</s>\n"
        "USER: And now?\nASSISTANT:"
    )
