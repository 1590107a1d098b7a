"""Cost of `VerseProcessor` alone per decoding step, by batch size, with a realistic vocabulary.

    python bench/processor.py --data /tmp/ccpc --crrd ../shared/data/crrd  # data/prepare.py's

bench/decoding.py times whole poems, where the model's forward pass hides how the masks scale
with the batch. Here no model runs: a sentencepiece tokenizer of Mengzi-T5's size is trained on
the data's poems, and each batch writes 七绝 poems line by line, a token a step picked at random
among those the processor allows, as sampling would. Prints a Markdown table of milliseconds
per step; every run writes the same poems, so two checkouts can be compared.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import tempfile
import time
from pathlib import Path

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


def time_steps(plan, rows: int, eos: int, vocab: int, seed: int = 0) -> tuple[float, int]:
    """Seconds in the processor and steps taken to write `rows` poems of `plan`'s form."""
    import torch

    from poemgen.constraints import VerseProcessor
    from poemgen.verse_state import initial_state, update_state

    generator = torch.Generator().manual_seed(seed)
    states = [initial_state(plan) for _ in range(rows)]
    spent, steps = 0.0, 0
    for line in range(plan.form.lines):
        processor = VerseProcessor(plan, line, states, eos)
        ids = torch.zeros((rows, 1), dtype=torch.long)
        done = torch.zeros(rows, dtype=torch.bool)
        for _ in range(plan.form.chars + 2):
            scores = torch.rand((rows, vocab), generator=generator)
            start = time.perf_counter()
            scores = processor(ids, scores)
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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="a folder written by data/prepare.py")
    p.add_argument("--crrd", default=os.environ.get("POEMGEN_CRRD"), help="平水韵 tables")
    p.add_argument("--pieces", type=int, default=32000, help="sentencepiece vocabulary size")
    p.add_argument("--vocab", type=int, default=32128, help="the model's vocabulary (Mengzi's)")
    p.add_argument("--batch", type=int, nargs="+", default=[8, 32, 64])
    args = p.parse_args()

    import torch

    from poemgen import rhymes
    from poemgen.masks import SystemTable, TokenTable, VersePlan
    from poemgen.options import PoemOptions

    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = train_tokenizer(Path(args.data), Path(tmp), args.pieces)
    table = TokenTable(tokenizer, args.vocab)
    print(f"| rules | {' | '.join(f'batch {rows}' for rows in args.batch)} |")
    print(f"| --- |{' --- |' * len(args.batch)}")
    for label, rules in RULES.items():
        if rules["rhyme"] == "pingshui" and not args.crrd:
            continue
        options = PoemOptions(lines=4, chars=7, **rules)
        system = SystemTable(table, rhymes.load_system(options.rhyme, args.crrd))
        cells = []
        for rows in args.batch:
            for seed in (1, 0):  # a warm-up, then a fresh plan, as each `Poet.write` makes
                plan = VersePlan(options.form, options.rules, table, system)
                spent, steps = time_steps(plan, rows, tokenizer.eos_token_id, args.vocab, seed)
            cells.append(f"{spent / steps * 1000:.2f}")
        print(f"| {label} | {' | '.join(cells)} |")
    print(f"\nms per step in the processor; 七绝, {len(tokenizer)} pieces, "
          f"{torch.get_num_threads()} CPU threads")


if __name__ == "__main__":
    main()
