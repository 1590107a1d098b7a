"""Copy a trained poet into the package, in 16-bit: what ships as `poemgen --poet mini`.

    python train/export.py RUN_DIR poemgen/poets/mini                 # the run's final poet
    python train/export.py RUN_DIR poemgen/poets/mini --checkpoint latest   # or a checkpoint's

RUN_DIR is train/t5.py's --output-dir. Only what loading needs is copied (config, tokenizer,
poemgen.json, weights as float16 safetensors), so the package stays small.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # checkpoints.py beside this file

from checkpoints import checkpoint_dirs  # noqa: E402

FILES = ("generation_config.json", "config.json", "spiece.model", "tokenizer_config.json")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run", type=Path, help="train/t5.py's --output-dir")
    p.add_argument("out", type=Path, help="e.g. poemgen/poets/mini")
    p.add_argument("--checkpoint", help="'latest' or a checkpoints/step-N folder: its weights "
                                        "instead of the final ones")
    p.add_argument("--note", default="", help="added to poemgen.json as `note`")
    args = p.parse_args(argv)

    import torch
    from safetensors.torch import load_file, save_file

    weights = args.run / "model.safetensors"
    steps = None
    if args.checkpoint:
        folders = checkpoint_dirs(args.run)
        folder = folders[-1] if args.checkpoint == "latest" and folders else Path(args.checkpoint)
        weights, steps = folder / "model.safetensors", int(folder.name.split("-")[1])
    missing = [str(f) for f in [weights] + [args.run / n for n in FILES[1:]] if not f.is_file()]
    if missing:
        print(f"export: error: {', '.join(missing)} missing; pass a finished train/t5.py run "
              "or --checkpoint latest", file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    for name in FILES:
        if (args.run / name).is_file():
            shutil.copy(args.run / name, args.out / name)
    state = {k: v.to(torch.float16) if v.is_floating_point() else v
             for k, v in load_file(weights).items()}
    save_file(state, args.out / "model.safetensors", metadata={"format": "pt"})
    metadata = json.loads((args.run / "poemgen.json").read_text(encoding="utf-8")) \
        if (args.run / "poemgen.json").is_file() else {"prompt_format": "poem", "format_version": 1}
    if steps is not None:
        metadata["steps"] = steps
    metadata.update(dtype="float16", **({"note": args.note} if args.note else {}))
    (args.out / "poemgen.json").write_text(json.dumps(metadata, ensure_ascii=False, indent=2) + "\n",
                                           encoding="utf-8")
    size = sum(f.stat().st_size for f in args.out.iterdir())
    print(f"{args.out}: {size / 1e6:.1f} MB ({len(state)} tensors, float16)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
