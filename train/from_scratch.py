"""A new poet from nothing: a character tokenizer built from the training poems, and a T5 from a
config file. Used by train/t5.py when it is given --config instead of a base model.

The tokenizer is a sentencepiece model with one piece per Chinese character (plus the prompt's
characters, `，` `。` and the word separator `▁`), written directly rather than trained, so it is
exactly reproducible from the data: characters that occur at least `min_count` times in the
training poems, most frequent first (ties by code point), scored by log frequency. One token per
character makes every rule of verse exact for the constraint masks, and costs nothing in
sequence length for verse, where sentencepiece's multi-character pieces are rare.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

SPECIALS = ("<pad>", "</s>", "<unk>")  # ids 0, 1, 2: T5's pad (= decoder start), EOS, unknown
SPACE = "▁"


def build_char_tokenizer(poems, prompt_texts: list[str], folder: Path, min_count: int = 3):
    """Write spiece.model and tokenizer_config.json into folder and return the tokenizer.
    `poems`: records with "lines"; `prompt_texts`: the prompt format's fixed text, whose
    characters are always kept."""
    from sentencepiece import sentencepiece_model_pb2 as pb
    from transformers import AutoTokenizer

    counts = Counter(c for poem in poems for line in poem["lines"] for c in line)
    chars = [c for c, n in sorted(counts.items(), key=lambda x: (-x[1], x[0])) if n >= min_count]
    fixed = sorted({c for text in prompt_texts for c in text if not c.isspace()} - set(chars))
    total = sum(counts.values())

    model = pb.ModelProto()
    model.trainer_spec.model_type = pb.TrainerSpec.UNIGRAM
    model.trainer_spec.pad_id, model.trainer_spec.eos_id = 0, 1
    model.trainer_spec.unk_id, model.trainer_spec.bos_id = 2, -1
    model.normalizer_spec.name = "identity"  # keep full-width punctuation as it is
    model.normalizer_spec.add_dummy_prefix = False
    model.normalizer_spec.remove_extra_whitespaces = True
    model.normalizer_spec.escape_whitespaces = True
    kinds = pb.ModelProto.SentencePiece
    for piece, kind in zip(SPECIALS, (kinds.CONTROL, kinds.CONTROL, kinds.UNKNOWN)):
        model.pieces.add(piece=piece, score=0.0, type=kind)
    model.pieces.add(piece=SPACE, score=-2.0, type=kinds.NORMAL)
    for c in chars + fixed:
        model.pieces.add(piece=c, score=math.log(max(counts[c], 1) / total), type=kinds.NORMAL)
    model.trainer_spec.vocab_size = len(model.pieces)

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "spiece.model").write_bytes(model.SerializeToString())
    (folder / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "T5Tokenizer", "extra_ids": 0, "eos_token": "</s>",
         "unk_token": "<unk>", "pad_token": "<pad>"}), encoding="utf-8")
    return AutoTokenizer.from_pretrained(folder)


def new_model(config_file: Path, tokenizer):
    """A randomly initialised T5 of the config's shape, with the tokenizer's vocabulary (rounded
    up to a multiple of 64, which matrix kernels like)."""
    from transformers import T5Config, T5ForConditionalGeneration

    settings = json.loads(Path(config_file).read_text(encoding="utf-8"))
    settings = {k: v for k, v in settings.items() if not k.startswith("_")}
    settings["vocab_size"] = (len(tokenizer) + 63) // 64 * 64
    return T5ForConditionalGeneration(T5Config(**settings))
