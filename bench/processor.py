"""Cost of `VerseProcessor` alone per decoding step, by batch size, against the model's step.

    python bench/processor.py --data /tmp/ccpc --crrd ../shared/data/crrd  # data/prepare.py's
    python bench/processor.py --data /tmp/ccpc --device cuda --reference

bench/run.py times whole poems, where the model's forward pass hides how the masks scale with
the batch. Here the processor runs alone: a sentencepiece tokenizer of Mengzi-T5's size is
trained on the data's poems, and each batch writes 七绝 poems line by line, a token a step
picked at random among those the processor allows, as sampling would. The model's step is timed
beside it: one decoding step of a Mengzi-T5-base-shaped poet (random weights, bf16 on CUDA)
with its cache, at the same batch size. `--reference` also times the per-row processor the
tensor one replaced (tests/reference_constraints.py). Prints a Markdown table of milliseconds
per step; every run writes the same poems, so two checkouts can be compared.
"""

from __future__ import annotations

import argparse
import functools
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from train_throughput import SIZES

ROOT = Path(__file__).resolve().parent.parent

RULES = {
    "新韵 loose + no repeats (default)": dict(rhyme="xinyun", tones="loose"),
    "平水韵 strict + no repeats": dict(rhyme="pingshui", tones="strict"),
}


def train_tokenizer(data: Path, folder: Path, pieces: int):
    import sentencepiece as spm
    from transformers import AutoTokenizer

    poems = [json.loads(line) for line in (data / "train.jsonl").read_text("utf-8").splitlines()]
    model_file = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter("".join(p["lines"]) + " " + " ".join(p["keywords"]) for p in poems),
        model_writer=model_file, vocab_size=pieces, character_coverage=0.9995, pad_id=0, eos_id=1,
        unk_id=2, bos_id=-1, hard_vocab_limit=False, minloglevel=2)
    (folder / "spiece.model").write_bytes(model_file.getvalue())
    (folder / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "T5Tokenizer", "extra_ids": 0}))
    return AutoTokenizer.from_pretrained(folder)


def sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def time_steps(processor_class, plan, rows: int, eos: int, vocab: int, device: str,
               seed: int = 0) -> tuple[float, int]:
    """Seconds in the processor and steps taken to write `rows` poems of `plan`'s form."""
    import torch

    from poemgen.verse_state import initial_state, update_state

    generator = torch.Generator().manual_seed(seed)
    states = [initial_state(plan) for _ in range(rows)]
    spent, steps = 0.0, 0
    for line in range(plan.form.lines):
        processor = processor_class(plan, line, states, eos)
        ids = torch.zeros((rows, 1), dtype=torch.long, device=device)
        done = torch.zeros(rows, dtype=torch.bool, device=device)
        for _ in range(plan.form.chars + 2):
            scores = torch.rand((rows, vocab), generator=generator).to(device)
            sync(device)
            start = time.perf_counter()
            scores = processor(ids, scores)
            sync(device)
            spent += time.perf_counter() - start
            steps += 1
            token = torch.where(done, 0, scores.argmax(dim=1))
            ids = torch.cat([ids, token.unsqueeze(1)], dim=1)
            done |= token == eos
            if done.all():
                break
        for state, row in zip(states, ids[:, 1:].tolist()):
            update_state(plan, state, line, plan.table.text(row))
    return spent, steps


def model_step(rows: int, vocab: int, device: str, repeats: int = 3) -> float:
    """Seconds per decoding step of a Mengzi-T5-base-shaped model at batch `rows` (with its
    cache, after a 24-token prompt): generate 12 tokens and 2, the difference over 10."""
    import torch

    model = base_model(vocab, device)
    prompt = torch.randint(3, vocab, (rows, 24), device=device)

    def run(tokens: int) -> float:
        best = float("inf")
        for _ in range(repeats):
            sync(device)
            start = time.perf_counter()
            with torch.inference_mode():
                model.generate(prompt, max_new_tokens=tokens, min_new_tokens=tokens,
                               do_sample=False)
            sync(device)
            best = min(best, time.perf_counter() - start)
        return best

    run(2)
    return max(run(12) - run(2), 0.0) / 10


@functools.lru_cache(maxsize=1)
def base_model(vocab: int, device: str):
    """A Mengzi-T5-base-shaped model with random weights (bf16 on CUDA), built once."""
    import torch
    from transformers import T5Config, T5ForConditionalGeneration

    config = T5Config(**{**SIZES["base"], "vocab_size": vocab}, feed_forward_proj="gated-gelu",
                      tie_word_embeddings=False, decoder_start_token_id=0, pad_token_id=0,
                      eos_token_id=1)
    torch.manual_seed(0)
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    return T5ForConditionalGeneration(config).to(device, dtype).eval()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="a folder written by data/prepare.py")
    p.add_argument("--crrd", default=os.environ.get("POEMGEN_CRRD"), help="平水韵 tables")
    p.add_argument("--pieces", type=int, default=32000, help="sentencepiece vocabulary size")
    p.add_argument("--vocab", type=int, default=32128, help="the model's vocabulary (Mengzi's)")
    p.add_argument("--batch", type=int, nargs="+", default=[8, 32, 64])
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--reference", action="store_true",
                   help="also time the per-row processor of tests/reference_constraints.py")
    p.add_argument("--no-model", action="store_true", help="skip timing the model's step")
    p.add_argument("--repeats", type=int, default=3,
                   help="timed runs per cell, the best reported (a shared machine is noisy)")
    args = p.parse_args()

    import torch

    from poemgen import rhymes
    from poemgen.constraints import VerseProcessor
    from poemgen.masks import SystemTable, TokenTable, VersePlan
    from poemgen.options import PoemOptions

    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA device here")
    processors = {"": VerseProcessor}
    if args.reference:
        sys.path.insert(0, str(ROOT / "tests"))
        from reference_constraints import VerseProcessor as Reference
        processors["per-row reference, "] = Reference
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = train_tokenizer(Path(args.data), Path(tmp), args.pieces)
    table = TokenTable(tokenizer, args.vocab)
    rows_out = []
    for label, rules in RULES.items():
        if rules["rhyme"] == "pingshui" and not args.crrd:
            continue
        options = PoemOptions(lines=4, chars=7, **rules)
        system = SystemTable(table, rhymes.load_system(options.rhyme, args.crrd))
        for name, processor_class in processors.items():
            cells = []
            for rows in args.batch:
                best = float("inf")
                for seed in range(args.repeats + 1):  # a warm-up, then fresh plans (as each
                    plan = VersePlan(options.form, options.rules, table, system)  # write makes)
                    spent, steps = time_steps(processor_class, plan, rows,
                                              tokenizer.eos_token_id, args.vocab, args.device,
                                              seed % 2)
                    if seed:
                        best = min(best, spent / steps)
                cells.append(best)
            rows_out.append((name + label, cells))
    model = None if args.no_model else [model_step(rows, args.vocab, args.device)
                                        for rows in args.batch]
    print(f"| processor | {' | '.join(f'batch {rows}' for rows in args.batch)} |")
    print(f"| --- |{' --- |' * len(args.batch)}")
    for label, cells in rows_out:
        shares = [""] * len(cells) if model is None else \
            [f" ({spent / step:.1%})" for spent, step in zip(cells, model)]
        print(f"| {label} | " + " | ".join(f"{spent * 1000:.2f}{share}"
                                          for spent, share in zip(cells, shares)) + " |")
    if model is not None:
        print("| the model's step (Mengzi-T5-base shape) | "
              + " | ".join(f"{step * 1000:.1f}" for step in model) + " |")
    where = torch.cuda.get_device_name() if args.device == "cuda" else \
        f"CPU, {torch.get_num_threads()} threads"
    print(f"\nms per step, best of {args.repeats} (in brackets: of the model's step); 七绝, "
          f"{len(tokenizer)} pieces, {where}")


if __name__ == "__main__":
    main()
