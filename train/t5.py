"""Train a T5 poet: fine-tune one (default: Langboat/mengzi-t5-base on CCPC, one example per
poem line), or train one from scratch from a config file (poemgen's shipped poet).

    python data/prepare.py                       # download and check CCPC once
    accelerate launch train/t5.py                # one GPU, several, or CPU: as `accelerate config` says
    python train/t5.py --max-steps 200 --mixed-precision no     # plain Python works too
    python train/t5.py --config train/configs/mini.json --data ~/.cache/poemgen/data/chinese-poetry
                                                 # from scratch: character tokenizer, whole poems

Line i of every poem is one example: the encoder reads the form, the keywords and lines 1..i-1,
built by `poemgen.prompt.LINES` (the same code that builds prompts at inference), and the
decoder learns line i. The loop is the canonical accelerate one (run_summarization_no_trainer):
checkpoints with `save_state` every N steps, written to a temporary folder and renamed, so a kill
at any moment leaves the last complete checkpoint; `--resume latest` continues bit for bit where
it stopped (seedable sampler, `set_epoch`, `skip_first_batches` counted in dataloader batches).
The result is a normal Hugging Face folder plus `poemgen.json`, so `poemgen --poet OUTPUT` uses it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the modules beside this file

from checkpoints import STATE_FILE, checkpoint_dirs, find_resume_point, save_checkpoint  # noqa: E402
from from_scratch import build_char_tokenizer, new_model  # noqa: E402

# Everything the run uses from poemgen is imported before it starts (poemgen.poet, which needs
# torch, at the start of train()): a run of hours must not import a package being edited meanwhile.
from poemgen import prompt  # noqa: E402
from poemgen.errors import PoemgenError  # noqa: E402
from poemgen.models import check_local, default_poet_folder, load_error, poemgen_home  # noqa: E402
from poemgen.options import PoemOptions  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Fine-tune a T5 poet on CCPC (see data/prepare.py).")
    p.add_argument("--model", default="Langboat/mengzi-t5-base", help="base T5: Hub id or folder")
    p.add_argument("--config", type=Path, metavar="FILE",
                   help="train from scratch instead: a T5 config (e.g. train/configs/mini.json) "
                        "and a character tokenizer built from the training poems")
    p.add_argument("--min-char-count", type=int, default=3,
                   help="with --config: characters seen fewer times become <unk> (default: 3)")
    p.add_argument("--prompt-format", choices=("lines", "poem"),
                   help="lines: one example per line; poem: one per whole poem (default: poem "
                        "with --config, else the base poet's own, else lines)")
    p.add_argument("--group-by-form", action=argparse.BooleanOptionalAction, default=True,
                   help="batches of one form (五绝, 七律 …) each, so little is padding")
    p.add_argument("--data", default=str(poemgen_home() / "data" / "ccpc"),
                   help="folder written by data/prepare.py")
    p.add_argument("--output-dir", default=str(default_poet_folder()),
                   help="where the poet goes (default: the folder poemgen looks in first)")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--max-steps", type=int, help="optimizer steps; overrides --epochs")
    p.add_argument("--max-minutes", type=float,
                   help="stop after this many minutes (as if the last step were reached): for "
                        "comparing runs at equal compute; the schedule still runs to --max-steps")
    p.add_argument("--batch-size", type=int, default=64, help="examples per device per step")
    p.add_argument("--grad-accum", type=int, default=1, help="batches per optimizer step")
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--optimizer", choices=("adamw", "adafactor"), default="adamw",
                   help="adafactor (T5's own, relative step sizes) suits training from scratch")
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--max-grad-norm", type=float, default=1.0, help="clip gradients (0: never)")
    p.add_argument("--scheduler", default="linear", help="linear, cosine, constant_with_warmup …")
    p.add_argument("--warmup-steps", type=int, default=0)
    p.add_argument("--mixed-precision", default="bf16", choices=("bf16", "no", "fp16"),
                   help="bf16 or no; T5 overflows in fp16, which is refused")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--checkpoint-every", type=int, default=1000, help="steps between checkpoints")
    p.add_argument("--keep-checkpoints", type=int, default=2, help="how many to keep")
    p.add_argument("--eval-every", type=int, default=1000, help="steps between evaluations")
    p.add_argument("--resume", nargs="?", const="latest", metavar="latest|PATH",
                   help="continue from the latest checkpoint in OUTPUT/checkpoints, or from PATH")
    p.add_argument("--report-to", default="none", help="none, tensorboard, wandb or all")
    p.add_argument("--max-train-samples", type=int, help="use only the first N poems (quick runs)")
    p.add_argument("--max-eval-samples", type=int, default=1000, help="validation poems to score")
    p.add_argument("--keyword-dropout", type=float, default=0.1,
                   help="chance to drop each keyword (keeping at least one), so the poet also "
                        "writes well from CLIP keywords that are not CCPC's")
    p.add_argument("--shuffle-keywords", action=argparse.BooleanOptionalAction, default=True,
                   help="shuffle keyword order in the prompt")
    p.add_argument("--max-source-length", type=int, default=128)
    p.add_argument("--num-proc", type=int, help="processes for building examples")
    p.add_argument("--sample-poems", type=int, default=3, help="poems printed at each evaluation")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        train(args)
    except PoemgenError as e:
        print(f"train: error: {e}", file=sys.stderr)
        return 1
    return 0


# --- data: poems → one example per line, built with the same prompt code as inference ------------

def poems_to_examples(batch: dict, indices: list[int], seed: int, keyword_dropout: float,
                      shuffle_keywords: bool, format_name: str = "lines") -> dict:
    """`lines`: one example per line (lines 1..i-1 in the prompt); `poem`: one per poem.
    `form` (lines × chars) is kept for grouping batches by form."""
    chosen = prompt.get_format(format_name)
    sources, targets, forms = [], [], []
    for index, lines, keywords in zip(indices, batch["lines"], batch["keywords"]):
        form = prompt.Form(len(lines), len(lines[0]))
        rng = random.Random(seed * 1_000_003 + index)  # same augmentation whatever num_proc is
        for i, line in enumerate(lines if chosen is prompt.LINES else lines[:1]):
            words = [w for w in keywords if rng.random() >= keyword_dropout]
            if not words and keywords:  # keep at least one
                words = [rng.choice(keywords)]
            if shuffle_keywords:
                rng.shuffle(words)
            sources.append(chosen.encoder_text(form, words, lines[:i]))
            targets.append(chosen.target(line if chosen is prompt.LINES else lines))
            forms.append(form.lines * 10 + form.chars)
    return {"source": sources, "target": targets, "form": forms}


class FormBatches:
    """Batches of examples of one form each (so a batch of 五绝 is not padded to 七律's length),
    in an order that changes with each epoch but is fixed by the seed, as exact resuming needs.
    The epoch is set by `use_epoch`, not `set_epoch`: accelerate calls any `set_epoch` it finds
    with its own count, which restarts at 0 in the loader that skips batches on resume."""

    def __init__(self, forms: list[int], batch_size: int, seed: int):
        self.forms, self.batch_size, self.seed, self.epoch = forms, batch_size, seed, 0

    def use_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def batches(self) -> list[list[int]]:
        rng = random.Random(self.seed * 1_000_003 + self.epoch)
        groups: dict[int, list[int]] = {}
        for i, form in enumerate(self.forms):
            groups.setdefault(form, []).append(i)
        out = []
        for form in sorted(groups):
            rng.shuffle(groups[form])
            members = groups[form]
            out += [members[i:i + self.batch_size] for i in range(0, len(members), self.batch_size)]
        rng.shuffle(out)
        return out

    def __iter__(self):
        return iter(self.batches())

    def __len__(self) -> int:
        counts: dict[int, int] = {}
        for form in self.forms:
            counts[form] = counts.get(form, 0) + 1
        return sum(math.ceil(n / self.batch_size) for n in counts.values())


def load_poems(data_dir: Path, args):
    from datasets import load_dataset
    from datasets.utils import logging as datasets_logging

    files = {split: data_dir / f"{split}.jsonl" for split in ("train", "valid")}
    missing = [str(f) for f in files.values() if not f.is_file()]
    if missing:
        raise PoemgenError(f"data folder '{data_dir}' has no {', '.join(missing)}; run "
                           "`python data/prepare.py` first (or pass --data)")
    verbosity = datasets_logging.get_verbosity()
    datasets_logging.set_verbosity(datasets_logging.CRITICAL)  # our one line replaces its traceback
    try:
        poems = load_dataset("json", data_files={k: str(v) for k, v in files.items()})
    except Exception as e:  # datasets wraps JSON and I/O errors in its own exception types
        reason = " ".join(str(e).split())[:160]
        raise PoemgenError(f"data folder '{data_dir}' cannot be read ({type(e).__name__}: "
                           f"{reason}); run `python data/prepare.py --force` again") from None
    finally:
        datasets_logging.set_verbosity(verbosity)
    if {"lines", "keywords"} - set(poems["train"].column_names):
        raise PoemgenError(f"data folder '{data_dir}' does not hold prepared poems (no lines or "
                           "keywords fields); run `python data/prepare.py`")
    if args.max_train_samples:
        poems["train"] = poems["train"].select(range(min(args.max_train_samples, len(poems["train"]))))
    if args.max_eval_samples:
        poems["valid"] = poems["valid"].select(range(min(args.max_eval_samples, len(poems["valid"]))))
    return poems


def choose_format(args):
    """--prompt-format, else `poem` from scratch, else the base poet's own, else `lines`."""
    if args.prompt_format:
        return prompt.get_format(args.prompt_format)
    if args.config:
        return prompt.POEM
    metadata = prompt.read_metadata(args.model) if os.path.isdir(args.model) else None
    return prompt.get_format((metadata or {}).get("prompt_format", "lines"))


def describe_data(manifest: dict) -> str:
    """One line for poemgen.json, so a shipped poet says what it read without the data folder:
    the corpus, its source and the data/prepare.py options that chose the poems (the manifest
    beside the data keeps the files' hashes)."""
    options = manifest.get("options", {})
    corpus = options.get("corpus", "ccpc")
    flags = [f"--corpus {corpus}"] + [f"--{k.replace('_', '-')} {v}" for k, v in options.items()
                                      if k not in ("corpus", "source", "exclude") and v is not None]
    if options.get("exclude"):
        flags.append("--exclude " + " ".join(options["exclude"]))
    source = options.get("source", "source unknown")
    return f"{corpus} ({source}), data/prepare.py {' '.join(flags)}"


def run_metadata(args) -> dict:
    """What made the poet, for its poemgen.json: data, base or config, counts, commit. Read when
    the run starts, so the commit is that of the code that trained."""
    found = {"data": str(args.data), "base_model": str(args.config) if args.config else args.model}
    manifest = Path(args.data) / "manifest.json"
    if manifest.is_file():
        data = json.loads(manifest.read_text(encoding="utf-8"))
        found.update(data=describe_data(data), data_counts=data.get("counts"),
                     licence=data.get("licence", "see the data"))
    try:
        found["commit"] = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True,
                                         text=True, cwd=Path(__file__).parent, check=True
                                         ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return found


# --- evaluation: validation loss and a few poems written by the model being trained -------------

def untouched_rng(accelerator):
    """A block after which torch's generators are as before it. Evaluation draws from them
    (each pass over a DataLoader draws its base seed), and training must not see that: a run
    extended past an evaluated last step must go on as if it had never stopped."""
    import torch

    device = accelerator.device
    return torch.random.fork_rng(devices=[device] if device.type == "cuda" else [])


def evaluate(accelerator, model, dataloader) -> tuple[float, float]:
    import torch

    model.eval()
    total_loss, total_tokens = 0.0, 0
    for batch in dataloader:
        with torch.no_grad():
            loss = model(**batch).loss
        tokens = (batch["labels"] != -100).sum()
        losses, counts = accelerator.gather_for_metrics((loss.detach() * tokens, tokens))
        total_loss += losses.sum().item()
        total_tokens += counts.sum().item()
    model.train()
    mean = total_loss / max(total_tokens, 1)
    return mean, math.exp(min(mean, 50))


def sample_poems(poet, model, poems, count: int) -> list[str]:
    """Poems written greedily with no rules, to show the model as it is. `poet` wraps the
    unwrapped `model` and is built before training, with all it imports."""
    model.eval()
    shown = []
    for poem in poems.select(range(min(count, len(poems)))):
        options = PoemOptions(lines=len(poem["lines"]), chars=len(poem["lines"][0]), temperature=0,
                              rhyme="none", tones="none", no_repeat=False)  # the model as it is
        ((verse,),) = poet.write([poem["keywords"]], options)
        lines = verse.lines
        shown.append(f"{' '.join(poem['keywords'])} → {'，'.join(lines)}。")
    model.train()
    return shown


# --- training ----------------------------------------------------------------------------------

def train(args: argparse.Namespace) -> None:
    if args.mixed_precision == "fp16":
        raise PoemgenError("--mixed-precision fp16: T5 overflows in float16 and trains to NaN; "
                           "use bf16 (Ampere GPUs or newer, and CPUs) or no")
    import torch
    from accelerate import Accelerator
    from accelerate.utils import DataLoaderConfiguration, set_seed
    from torch.utils.data import DataLoader
    from tqdm.auto import tqdm
    from transformers import (AutoTokenizer, DataCollatorForSeq2Seq, T5ForConditionalGeneration,
                              get_scheduler)
    from transformers.utils import logging as hf_logging

    from poemgen.poet import Poet

    accelerator = Accelerator(
        mixed_precision=args.mixed_precision, gradient_accumulation_steps=args.grad_accum,
        log_with=None if args.report_to == "none" else args.report_to,
        project_dir=args.output_dir,
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True))
    if accelerator.mixed_precision == "fp16":
        raise PoemgenError("accelerate is configured for fp16, which T5 cannot train in; "
                           "pass --mixed-precision bf16 or no, or change `accelerate config`")
    hf_logging.set_verbosity_error()
    set_seed(args.seed)
    output_dir = Path(args.output_dir)
    if not args.resume and checkpoint_dirs(output_dir):
        raise PoemgenError(f"'{output_dir}' already has checkpoints; pass --resume latest to "
                           "continue, or choose another --output-dir")

    poems = load_poems(Path(args.data), args)
    made_by = run_metadata(args)
    chosen = choose_format(args)
    if args.config:  # from scratch: the tokenizer from the data (kept in the output folder)
        if not args.config.is_file():
            raise PoemgenError(f"--config '{args.config}' is not a file; pass a T5 config such "
                               "as train/configs/mini.json")
        with accelerator.main_process_first():
            if args.resume and (output_dir / "spiece.model").is_file():
                tokenizer = AutoTokenizer.from_pretrained(output_dir)
            else:
                fixed = [chosen.encoder_text(prompt.Form(n, c), ["无"], []) for n in (4, 8)
                         for c in (5, 7)] + [f"第{n}句上文" for n in "一二三四五六七八"]
                fixed.append("".join(prompt.punctuate(["", ""])))  # ， and 。 of the targets
                tokenizer = build_char_tokenizer(poems["train"], fixed, output_dir,
                                                 args.min_char_count)
        from huggingface_hub.errors import StrictDataclassFieldValidationError

        try:
            model = new_model(args.config, tokenizer)
        except (ValueError, TypeError, StrictDataclassFieldValidationError) as e:
            raise PoemgenError(f"--config '{args.config}' is not a usable T5 config "
                               f"({' '.join(str(e).split())[:160]})") from None
        if accelerator.is_main_process:  # with the tokenizer: a checkpoint can be exported
            model.config.save_pretrained(output_dir)
            prompt.write_metadata(output_dir, chosen, steps=0, **made_by)
    else:
        check_local("base model", args.model)
        try:
            tokenizer = AutoTokenizer.from_pretrained(args.model)
            # float32 whatever the checkpoint holds: the shipped poet is stored in 16-bit
            model = T5ForConditionalGeneration.from_pretrained(args.model, dtype=torch.float32)
        except (OSError, ValueError) as e:
            raise load_error("base model", args.model, e) from None

    with accelerator.main_process_first():
        examples = poems.map(
            poems_to_examples, batched=True, with_indices=True, num_proc=args.num_proc,
            remove_columns=poems["train"].column_names, desc=f"poems → {chosen.name} examples",
            fn_kwargs=dict(seed=args.seed, keyword_dropout=args.keyword_dropout,
                           shuffle_keywords=args.shuffle_keywords, format_name=chosen.name))
        tokenized = examples.map(
            lambda batch: tokenizer(batch["source"], text_target=batch["target"],
                                    max_length=args.max_source_length, truncation=True),
            batched=True, num_proc=args.num_proc, remove_columns=["source", "target"],
            desc="tokenising")
    forms = tokenized["train"]["form"]
    tokenized = tokenized.remove_columns("form")

    collator = DataCollatorForSeq2Seq(tokenizer, model=model, label_pad_token_id=-100)
    # The loader gets its own generator: creating an iterator draws a seed from it, and from the
    # global generator that dropout uses if it had none, which would make resumed runs diverge.
    form_batches = FormBatches(forms, args.batch_size, args.seed) if args.group_by_form else None
    if form_batches:
        train_dataloader = DataLoader(tokenized["train"], batch_sampler=form_batches,
                                      collate_fn=collator,
                                      generator=torch.Generator().manual_seed(args.seed))
    else:
        train_dataloader = DataLoader(tokenized["train"], shuffle=True, collate_fn=collator,
                                      batch_size=args.batch_size,
                                      generator=torch.Generator().manual_seed(args.seed))
    eval_dataloader = DataLoader(tokenized["valid"], collate_fn=collator, batch_size=args.batch_size)

    no_decay = ("bias", "layer_norm.weight")
    groups = [
        {"params": [p for n, p in model.named_parameters() if not n.endswith(no_decay)],
         "weight_decay": args.weight_decay},
        {"params": [p for n, p in model.named_parameters() if n.endswith(no_decay)],
         "weight_decay": 0.0},
    ]
    if args.optimizer == "adafactor":  # T5's own: steps relative to each weight's scale
        from transformers.optimization import Adafactor

        optimizer = Adafactor(groups, lr=args.lr, scale_parameter=True, relative_step=False,
                              warmup_init=False)
    else:
        optimizer = torch.optim.AdamW(groups, lr=args.lr)
    steps_per_epoch = math.ceil(len(train_dataloader) / accelerator.num_processes / args.grad_accum)
    max_steps = args.max_steps or args.epochs * steps_per_epoch
    scheduler = get_scheduler(args.scheduler, optimizer,
                              num_warmup_steps=args.warmup_steps * accelerator.num_processes,
                              num_training_steps=max_steps * accelerator.num_processes)
    model, optimizer, train_dataloader, eval_dataloader, scheduler = accelerator.prepare(
        model, optimizer, train_dataloader, eval_dataloader, scheduler)
    poet = (Poet(accelerator.unwrap_model(model), tokenizer, chosen, accelerator.device)
            if accelerator.is_main_process and args.sample_poems else None)

    if args.report_to != "none":
        accelerator.init_trackers("poemgen-t5", config={k: v for k, v in vars(args).items()
                                                        if isinstance(v, (int, float, str, bool))})
    completed_steps, epoch, batch_in_epoch = 0, 0, 0
    if args.resume:
        checkpoint = find_resume_point(output_dir, args.resume)
        accelerator.load_state(str(checkpoint))
        state = json.loads((checkpoint / STATE_FILE).read_text())
        completed_steps, epoch, batch_in_epoch = (state["completed_steps"], state["epoch"],
                                                  state["batch_in_epoch"])
        accelerator.print(f"resumed from {checkpoint} at step {completed_steps}")

    accelerator.print(f"{len(tokenized['train'])} training examples, {steps_per_epoch} steps per "
                      f"epoch, {max_steps} steps, {accelerator.num_processes} process(es)")
    progress = tqdm(total=max_steps, initial=completed_steps, desc="training",
                    disable=not accelerator.is_local_main_process)
    model.train()
    running_loss, running_batches = 0.0, 0
    valid_loss = None  # the last evaluation's, recorded in poemgen.json
    # Throughput: training time only (no evaluation or checkpoints), after a few warm-up steps
    # (CUDA start-up, first allocations).
    warmup_until = completed_steps + min(5, max(max_steps - completed_steps - 1, 0))
    timed_since, timed_seconds, timed_examples, timed_tokens = None, 0.0, 0, 0
    started = time.perf_counter()
    while completed_steps < max_steps:
        train_dataloader.set_epoch(epoch)
        if form_batches:
            form_batches.use_epoch(epoch)
        batches = (accelerator.skip_first_batches(train_dataloader, batch_in_epoch)
                   if batch_in_epoch else train_dataloader)
        for batch in batches:
            with accelerator.accumulate(model):
                loss = model(**batch).loss
                accelerator.backward(loss)
                if accelerator.sync_gradients and args.max_grad_norm > 0:
                    accelerator.clip_grad_norm_(model.parameters(), args.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
            batch_in_epoch += 1
            running_loss += loss.detach().float().item()  # also waits for the device
            running_batches += 1
            if timed_since is not None:
                timed_examples += len(batch["input_ids"]) * accelerator.num_processes
                timed_tokens += int(batch["attention_mask"].sum() + (batch["labels"] != -100).sum()
                                    ) * accelerator.num_processes
            if not accelerator.sync_gradients:
                continue
            completed_steps += 1
            progress.update(1)
            if timed_since is not None:
                timed_seconds += time.perf_counter() - timed_since
            mean_loss = running_loss / running_batches
            running_loss, running_batches = 0.0, 0
            minutes = (time.perf_counter() - started) / 60
            if args.max_minutes and minutes >= args.max_minutes:
                max_steps = completed_steps  # out of time: finish as at the last step
            progress.set_postfix(loss=f"{mean_loss:.3f}")
            accelerator.log({"train/loss": mean_loss, "train/lr": scheduler.get_last_lr()[0]},
                            step=completed_steps)
            if completed_steps % args.eval_every == 0 or completed_steps == max_steps:
                with untouched_rng(accelerator):
                    eval_loss, perplexity = evaluate(accelerator, model, eval_dataloader)
                valid_loss = round(eval_loss, 4)
                accelerator.print(f"step {completed_steps} ({minutes:.1f} min): train loss "
                                  f"{mean_loss:.4f}, "
                                  f"valid loss {eval_loss:.4f}, perplexity {perplexity:.2f}")
                accelerator.log({"valid/loss": eval_loss, "valid/perplexity": perplexity},
                                step=completed_steps)
                if poet is not None:
                    with untouched_rng(accelerator):
                        shown = sample_poems(poet, model, poems["valid"], args.sample_poems)
                    for line in shown:
                        accelerator.print("  " + line)
            if completed_steps % args.checkpoint_every == 0 or completed_steps == max_steps:
                save_checkpoint(accelerator, output_dir,
                                {"completed_steps": completed_steps, "epoch": epoch,
                                 "batch_in_epoch": batch_in_epoch}, args.keep_checkpoints)
            if completed_steps >= warmup_until:
                timed_since = time.perf_counter()
            if completed_steps >= max_steps:
                break
        else:
            epoch, batch_in_epoch = epoch + 1, 0
    progress.close()
    if timed_examples:
        accelerator.print(f"throughput: {timed_examples / timed_seconds:.1f} examples/s, "
                          f"{timed_tokens / timed_seconds:.0f} tokens/s "
                          f"(steps {warmup_until + 1}-{completed_steps}, training time only)")

    accelerator.wait_for_everyone()
    accelerator.unwrap_model(model).save_pretrained(
        output_dir, is_main_process=accelerator.is_main_process, save_function=accelerator.save)
    if accelerator.is_main_process:
        tokenizer.save_pretrained(output_dir)
        measured = {"valid_loss": valid_loss} if valid_loss is not None else {}
        prompt.write_metadata(output_dir, chosen, steps=completed_steps, **made_by, **measured)
        accelerator.print(f"poet saved to {output_dir}; try: poemgen photo.jpg --poet {output_dir}")
    accelerator.end_training()


if __name__ == "__main__":
    raise SystemExit(main())
