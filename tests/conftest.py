"""Tiny random models, built once per test session and loaded through the public API.

Nothing is downloaded: Chinese-CLIP gets a BERT-style character vocabulary, the T5 poet a
sentencepiece model trained here on the fly, and both are saved with `save_pretrained` in the
same file layout as the real checkpoints (the poet folder, like Mengzi-T5, carries only
`spiece.model` for its tokenizer). Random weights write nonsense; the tests check mechanics.
"""

from __future__ import annotations

import io
import json
import os
import random
import shutil
from pathlib import Path
from types import SimpleNamespace

os.environ["HF_HUB_OFFLINE"] = "1"  # before anything imports huggingface_hub: never touch the network

import pytest
from PIL import Image

from poemgen import prompt
from poemgen.keywords import DEFAULT_TEMPLATES, Vocabulary

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def build_tiny_clip(folder: Path, vocabulary: Vocabulary) -> None:
    import torch
    from transformers import (BertTokenizer, ChineseCLIPConfig, ChineseCLIPImageProcessor,
                              ChineseCLIPModel, ChineseCLIPProcessor)

    chars = sorted({c for text in vocabulary.words + DEFAULT_TEMPLATES for c in text} - set("{}"))
    tokenizer = BertTokenizer(vocab={token: i for i, token in enumerate(SPECIALS + chars)})
    images = ChineseCLIPImageProcessor(size={"shortest_edge": 32},
                                       crop_size={"height": 32, "width": 32})
    config = ChineseCLIPConfig(
        text_config=dict(vocab_size=len(SPECIALS) + len(chars), hidden_size=32, num_hidden_layers=2,
                         num_attention_heads=2, intermediate_size=64, max_position_embeddings=64),
        vision_config=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                           intermediate_size=64, image_size=32, patch_size=8),
        projection_dim=16)
    torch.manual_seed(0)
    ChineseCLIPModel(config).save_pretrained(folder)
    ChineseCLIPProcessor(image_processor=images, tokenizer=tokenizer).save_pretrained(folder)


def build_tiny_poet(folder: Path, vocabulary: Vocabulary) -> None:
    import sentencepiece as spm
    import torch
    from transformers import AutoTokenizer, T5Config, T5ForConditionalGeneration

    rng = random.Random(0)
    words = list(vocabulary.words)
    sentences = []
    for _ in range(400):  # prompts and lines made of vocabulary words: multi-character pieces
        lines = ["".join(rng.choice(words) for _ in range(3))[:5] for _ in range(rng.randint(0, 3))]
        sentences.append(prompt.LINES.encoder_text(prompt.Form(4, 5), rng.sample(words, 3), lines))
        sentences.append(prompt.FORMATS["title"].encoder_text(prompt.Form(), rng.sample(words, 3),
                                                              [], imitate="李白"))
    for form in (prompt.Form(8, 7), prompt.Form(4, 7), prompt.Form(8, 5)):
        sentences.append(prompt.LINES.encoder_text(form, words[:3], ["一"] * (form.lines - 1)))
        sentences.append(prompt.FORMATS["title"].decoder_prefix(["一" * form.chars] * form.lines))
    sentences += words
    model_file = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences), model_writer=model_file, vocab_size=2000,
        model_type="unigram", character_coverage=1.0, pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
        hard_vocab_limit=False, minloglevel=2)
    folder.mkdir(parents=True)
    (folder / "spiece.model").write_bytes(model_file.getvalue())
    (folder / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "T5Tokenizer", "extra_ids": 0, "eos_token": "</s>",
         "unk_token": "<unk>", "pad_token": "<pad>"}))
    tokenizer = AutoTokenizer.from_pretrained(folder)
    config = T5Config(vocab_size=(len(tokenizer) + 7) // 8 * 8 + 8, d_model=32, d_ff=64, d_kv=16,
                      num_layers=2, num_decoder_layers=2, num_heads=2,
                      feed_forward_proj="gated-gelu", decoder_start_token_id=0, pad_token_id=0,
                      eos_token_id=1, tie_word_embeddings=False)
    torch.manual_seed(0)
    T5ForConditionalGeneration(config).save_pretrained(folder)
    prompt.write_metadata(folder)


@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> SimpleNamespace:
    """Folders of a tiny Chinese-CLIP (`tiny.clip`) and a tiny poet (`tiny.poet`)."""
    root = tmp_path_factory.mktemp("models")
    vocabulary = Vocabulary.default()
    build_tiny_clip(root / "clip", vocabulary)
    build_tiny_poet(root / "poet", vocabulary)
    return SimpleNamespace(clip=str(root / "clip"), poet=str(root / "poet"))


@pytest.fixture(scope="session", autouse=True)
def isolated_datasets_cache(tmp_path_factory):
    """The `datasets` library caches processed files by path; keep the tests' out of ~/.cache."""
    os.environ["HF_DATASETS_CACHE"] = str(tmp_path_factory.mktemp("datasets-cache"))


@pytest.fixture(autouse=True)
def isolated_home(tmp_path, monkeypatch) -> Path:
    """Each test gets its own $POEMGEN_HOME and an empty Hugging Face cache, and no poet or
    CLIP from the environment, so a developer's own setup never changes a result."""
    from huggingface_hub import constants

    home = tmp_path / "poemgen-home"
    monkeypatch.setenv("POEMGEN_HOME", str(home))
    monkeypatch.delenv("POEMGEN_POET", raising=False)
    monkeypatch.delenv("POEMGEN_CLIP", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    return home


@pytest.fixture
def hub_cache(tmp_path):
    """Put a folder into the (per-test) Hugging Face cache as if `hf download REPO` had run."""
    from huggingface_hub import constants

    def add(repo_id: str, folder: str, skip: tuple[str, ...] = ()) -> None:
        repo = Path(constants.HF_HUB_CACHE) / f"models--{repo_id.replace('/', '--')}"
        commit = "0" * 40
        (repo / "refs").mkdir(parents=True)
        (repo / "refs" / "main").write_text(commit)
        shutil.copytree(folder, repo / "snapshots" / commit,
                        ignore=shutil.ignore_patterns(*skip))

    return add


def make_photo(path: Path, colour=(30, 90, 160), size=(64, 48)) -> Path:
    Image.new("RGB", size, colour).save(path)
    return path


@pytest.fixture
def photo(tmp_path) -> Path:
    return make_photo(tmp_path / "photo.jpg")
