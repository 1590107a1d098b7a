"""Training throughput of train/t5.py at the real Mengzi-T5-base size, with random weights.

    python data/prepare.py --source ../shared/data/ccpc --train-split valid --out /tmp/ccpc
    python bench/train_throughput.py --data /tmp/ccpc --size base --batch-size 64 --mixed-precision bf16

Builds a T5 from a config (no download): `base` has Mengzi-T5-base's shape (d_model 768, d_ff 2048,
12+12 layers, 12 heads, vocab 32128, gated-gelu), `tiny` the test suite's. Its tokenizer is a
sentencepiece model trained here on the data's poems, so sequence lengths are close to Mengzi's.
train/t5.py itself runs and reports its steady-state rate (timed after 5 warm-up steps, so free
of start-up and loading). Prints one table row.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import re
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CCPC_TRAIN_POEMS = 109_727  # the full CCPC v1.0 training split, 4 lines a poem
SIZES = {
    "base": dict(d_model=768, d_ff=2048, d_kv=64, num_layers=12, num_decoder_layers=12,
                 num_heads=12, vocab_size=32128),
    "tiny": dict(d_model=32, d_ff=64, d_kv=16, num_layers=2, num_decoder_layers=2, num_heads=2,
                 vocab_size=8192),
}


def build_model(folder: Path, data: Path, size: str) -> None:
    import sentencepiece as spm
    import torch
    from transformers import T5Config, T5ForConditionalGeneration

    poems = [json.loads(line) for line in (data / "train.jsonl").read_text("utf-8").splitlines()]
    text = ["".join(p["lines"]) + " " + " ".join(p["keywords"]) for p in poems]
    model_file = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(text), model_writer=model_file, vocab_size=8000,
        character_coverage=0.9995, pad_id=0, eos_id=1, unk_id=2, bos_id=-1, minloglevel=2)
    folder.mkdir(parents=True)
    (folder / "spiece.model").write_bytes(model_file.getvalue())
    (folder / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "T5Tokenizer", "extra_ids": 0}))
    config = T5Config(**SIZES[size], feed_forward_proj="gated-gelu", tie_word_embeddings=False,
                      decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
    torch.manual_seed(0)
    T5ForConditionalGeneration(config).save_pretrained(folder)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="a folder written by data/prepare.py")
    p.add_argument("--size", choices=tuple(SIZES), default="base")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--mixed-precision", choices=("bf16", "no"), default="bf16")
    p.add_argument("--steps", type=int, default=60, help="optimizer steps (the first 5 untimed)")
    args = p.parse_args()

    import torch
    spec = importlib.util.spec_from_file_location("train_t5", ROOT / "train" / "t5.py")
    t5 = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(t5)

    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp) / "model"
        build_model(model, Path(args.data), args.size)
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        log = io.StringIO()
        with contextlib.redirect_stdout(log):
            code = t5.main(["--model", str(model), "--data", args.data,
                            "--output-dir", str(Path(tmp) / "out"), "--max-steps", str(args.steps),
                            "--batch-size", str(args.batch_size),
                            "--mixed-precision", args.mixed_precision, "--eval-every", "1000000",
                            "--checkpoint-every", "1000000", "--max-eval-samples", "8",
                            "--sample-poems", "0"])
        assert code == 0, "train/t5.py failed"
        found = re.search(r"throughput: ([\d.]+) examples/s, (\d+) tokens/s", log.getvalue())
        rate, token_rate = float(found.group(1)), int(found.group(2))

    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU ({torch.get_num_threads()} threads)"
    memory = f"{torch.cuda.max_memory_allocated() / 2**30:.1f} GiB" if torch.cuda.is_available() else "-"
    epoch_hours = CCPC_TRAIN_POEMS * 4 / rate / 3600
    print("| device | size | precision | batch | examples/s | tokens/s | peak GPU memory | one CCPC-train epoch |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    print(f"| {device} | {args.size} | {args.mixed_precision} | {args.batch_size} | {rate:.1f} | "
          f"{token_rate} | {memory} | {epoch_hours:.2f} h |")


if __name__ == "__main__":
    main()
