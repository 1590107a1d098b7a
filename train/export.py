"""Copy a trained poet into the package, in 16-bit: what ships as `poemgen --poet mini`.

    python train/export.py RUN_DIR poemgen/poets/mini                 # the run's final poet
    python train/export.py RUN_DIR poemgen/poets/mini --checkpoint latest   # or a checkpoint's
    python train/export.py RUN_DIR poemgen/poets/mini --data DATA    # and the lines it read

RUN_DIR is train/t5.py's --output-dir. Only what loading needs is written, so the package stays
small and re-exporting a poet changes only its weights and poemgen.json: config.json without what
describes the run rather than the model, spiece.model and the few settings that load it,
poemgen.json (the run's, with --note and --training), and the weights as float16 safetensors.
With --data (data/prepare.py's folder), also the Bloom filter of its training lines that line
search uses to avoid quoting them (`poemgen.seen_lines`); without it, an earlier one is kept.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # checkpoints.py beside this file

from checkpoints import checkpoint_dirs  # noqa: E402

NEEDED = ("config.json", "spiece.model", "tokenizer_config.json")
# Written by transformers about the run, not the model: the library version, the float32 the run
# trained in (the weights here are float16, which loading reads from them), the class name
# (poemgen names T5ForConditionalGeneration itself).
RUN_NOISE = ("architectures", "dtype", "torch_dtype", "transformers_version", "_name_or_path")
# What AutoTokenizer needs beside spiece.model (extra_ids: T5Tokenizer adds 100 <extra_id_N>
# tokens unless told 0), in the order train/from_scratch.py writes them.
TOKENIZER_KEYS = ("tokenizer_class", "extra_ids", "eos_token", "unk_token", "pad_token")
# Files an earlier export wrote or a copy may have left, which loading would read beside these.
STALE = ("generation_config.json", "tokenizer.json")


def model_config(run: dict) -> dict:
    """The run's config.json less RUN_NOISE, and less `use_cache` when it is the default (it
    says how to generate, not what the model is). Every other key stays, defaults included, so
    a later transformers with other defaults still builds the same model."""
    kept = {k: v for k, v in run.items() if k not in RUN_NOISE}
    if kept.get("use_cache") is True:
        del kept["use_cache"]
    return kept


def sentencepiece_model(run: Path) -> Path:
    """The run's spiece.model; for a run continued from a poet folder (`--model
    poemgen/poets/mini`), where transformers 5 saves only tokenizer.json, the base folder's,
    which the run did not change."""
    if (run / "spiece.model").is_file() or not (run / "poemgen.json").is_file():
        return run / "spiece.model"
    base = json.loads((run / "poemgen.json").read_text(encoding="utf-8")).get("base_model", "")
    found = Path(base) / "spiece.model"
    return found if found.is_file() else run / "spiece.model"


def tokenizer_config(run: dict) -> dict:
    return {k: run[k] for k in TOKENIZER_KEYS if k in run}


def write_seen_lines(train: Path, out: Path) -> None:
    """The lines a copy would be counted against (`poemgen eval --train`), as a Bloom filter."""
    from poemgen.corpus import training_lines
    from poemgen.metrics import COPY_MIN_CHARS
    from poemgen.seen_lines import FILENAME, SeenLines

    lines = [line for line in training_lines(str(train)) if len(line) >= COPY_MIN_CHARS]
    SeenLines.of(lines).save(out / FILENAME)
    print(f"{out / FILENAME}: {len(lines)} lines of {train}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run", type=Path, help="train/t5.py's --output-dir")
    p.add_argument("out", type=Path, help="e.g. poemgen/poets/mini")
    p.add_argument("--checkpoint", help="'latest' or a checkpoints/step-N folder: its weights "
                                        "instead of the final ones")
    p.add_argument("--data", type=Path, help="data/prepare.py's folder the poet was trained on: "
                                             "write the filter of its train.jsonl lines")
    p.add_argument("--note", default="", help="added to poemgen.json as `note`")
    p.add_argument("--training", default="", help="added to poemgen.json as `training`: how the "
                                                  "poet was trained, over all its sessions")
    args = p.parse_args(argv)

    import torch
    from safetensors.torch import load_file, save_file

    weights = args.run / "model.safetensors"
    steps = None
    if args.checkpoint:
        folders = checkpoint_dirs(args.run)
        folder = folders[-1] if args.checkpoint == "latest" and folders else Path(args.checkpoint)
        weights, steps = folder / "model.safetensors", int(folder.name.split("-")[1])
    spiece = sentencepiece_model(args.run)
    needed = [weights, spiece] + [args.run / n for n in NEEDED if n != "spiece.model"]
    missing = [str(f) for f in needed + ([args.data / "train.jsonl"] if args.data else [])
               if not f.is_file()]
    if missing:
        print(f"export: error: {', '.join(missing)} missing; pass a finished train/t5.py run "
              "(or --checkpoint latest) and data/prepare.py's folder", file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    for name in STALE:
        (args.out / name).unlink(missing_ok=True)
    # No generation_config.json: the run's is derived from config.json (`_from_model_config`),
    # which loading does again, and poemgen passes its own GenerationConfig for every line.
    config = model_config(json.loads((args.run / "config.json").read_text(encoding="utf-8")))
    (args.out / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    shutil.copy(spiece, args.out / "spiece.model")
    tokenizer = tokenizer_config(json.loads((args.run / "tokenizer_config.json")
                                            .read_text(encoding="utf-8")))
    (args.out / "tokenizer_config.json").write_text(json.dumps(tokenizer), encoding="utf-8")
    state = {k: v.to(torch.float16) if v.is_floating_point() else v
             for k, v in load_file(weights).items()}
    save_file(state, args.out / "model.safetensors", metadata={"format": "pt"})
    metadata = json.loads((args.run / "poemgen.json").read_text(encoding="utf-8")) \
        if (args.run / "poemgen.json").is_file() else {"prompt_format": "poem", "format_version": 1}
    if steps is not None:
        metadata["steps"] = steps
    metadata["dtype"] = "float16"
    metadata.update({k: v for k, v in (("note", args.note), ("training", args.training)) if v})
    (args.out / "poemgen.json").write_text(json.dumps(metadata, ensure_ascii=False, indent=2) + "\n",
                                           encoding="utf-8")
    if args.data:
        write_seen_lines(args.data / "train.jsonl", args.out)
    size = sum(f.stat().st_size for f in args.out.iterdir())
    print(f"{args.out}: {size / 1e6:.1f} MB ({len(state)} tensors, float16)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
