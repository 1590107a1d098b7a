"""Every speed benchmark of poemgen side by side, in one process, at the real model sizes.

    python bench/run.py                          # everything, this machine's CPU
    python bench/run.py --quick                  # fewer repeats: a 2-3 minute smoke run
    python bench/run.py --out BENCHMARKS.md      # also write the report (machine, date, command)
    python bench/run.py --device cuda            # on a GPU: bf16, and poems/s at batch 8/32/64

Nothing is downloaded. The models have the real architectures and sizes with random weights,
built from configs and saved with `save_pretrained` into a temporary folder, then loaded
through poemgen's own loading code (`KeywordScorer.load`, `Poet.load`, the `poemgen` command):

- Chinese-CLIP ViT-B/16 (`OFA-Sys/chinese-clip-vit-base-patch16`'s shape): a RoBERTa-wwm-base
  style text tower (vocabulary 21128, hidden 768, 12 layers, 12 heads, MLP 3072, 512 positions),
  a ViT-B/16 image tower (hidden 768, 12 layers, 12 heads, MLP 3072, 16 px patches, 224 px) and
  512-dimensional projections; a BERT character vocabulary of 21128 entries (the specials, every
  CJK Unified Ideograph U+4E00-U+9FFF, some punctuation, unused slots), and
  `ChineseCLIPImageProcessor` at 224 px.
- Mengzi-T5-base's shape (d_model 768, d_ff 2048, 12+12 layers, 12 heads, vocabulary 32128,
  gated-GELU), built by `train_throughput.build_model` with a sentencepiece tokenizer trained on
  the CCPC poems of `--data` (a folder written by data/prepare.py).

On `--device cuda` Chinese-CLIP runs under bf16 autocast and the poet is cast to bf16 after
`Poet.load`; poems per second are measured at batch 8, 32 and 64, and section 6 trains the base
size in bf16. On this project's 2-core CPU machine the full run takes about 5 minutes, `--quick`
about 2 (the cold `poemgen` run, which encodes the whole vocabulary, is most of it).

Each section is a module of its own (`keyword_scoring.py`, `poem_writing.py`, `cold_start.py`,
`flops.py`, `training.py`), measuring in the shared context of `common.py` (`Bench`: the
models, the photos, the device's timer); this file runs them in order and writes the report.

Random weights write nonsense, but every step runs the full model and every rule, which is what
is timed. A measurement that fails (an exception in poemgen, a `poemgen` process that exits
non-zero) is reported under its section's table and the others go on. Each section prints a Markdown table as soon as it is done; `--out` writes them all,
with the machine, the date and the exact command, into one file. No number in that file is typed
in: all are measured or computed here (FLOPs analytically from the configs, see `vit_flops`,
`text_flops`, `t5_prompt_flops`, `t5_step_flops`).
"""

from __future__ import annotations

import argparse
import datetime
import os
import shlex
import sys
import tempfile
import time
import traceback
from pathlib import Path

from cold_start import cold_start, memory
from common import (CLIP_VOCAB, DISTURBED, QUICK, FULL, START, Bench, CpuWatch, Section,
                    add_model_arguments, build_clip, build_poet, git_revision, log, machine,
                    num_params, one_line, runner_for)
from flops import flops
from keyword_scoring import keywords
from poem_writing import poems
from training import training


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer repeats (a 2-3 minute smoke run)")
    add_model_arguments(p)
    p.add_argument("--out", type=Path, help="write the report here (e.g. BENCHMARKS.md)")
    p.add_argument("--skip-training", action="store_true", help="leave out section 6")
    args = p.parse_args(argv)
    command = shlex.join(["python", "bench/run.py", *(sys.argv[1:] if argv is None else argv)])
    runner = runner_for(p, args)
    plan = QUICK if args.quick else FULL
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    about_machine = machine(runner)
    sections: list[Section] = []

    watch = CpuWatch()

    def attempt(name: str, fn) -> None:
        section_watch = CpuWatch()
        bench.failures = []
        try:
            section = fn()
        except Exception as e:  # one broken section must not lose the others
            traceback.print_exc()
            section = Section(name, f"**Failed:** `{type(e).__name__}: {one_line(e)}`")
        if bench.failures:
            section.body += "\n\nFailed here:\n\n" + "\n".join(f"- {f}" for f in bench.failures)
        others = section_watch.others()
        if others and others[1] > DISTURBED:
            section.body += (f"\n\n**Disturbed:** other processes used {others[1]:.0%} of the "
                             "machine's CPU time while this section ran; rerun on a quiet "
                             "machine before trusting these timings.")
            log(f"warning: other processes used {others[1]:.0%} of the CPUs during '{name}'")
        sections.append(section)
        print("\n" + section.markdown(), flush=True)

    with tempfile.TemporaryDirectory(prefix="poemgen-bench-") as tmp_name:
        tmp = Path(tmp_name)
        os.environ.setdefault("HF_DATASETS_CACHE", str(tmp / "datasets-cache"))
        bench = Bench(args, plan, runner, tmp)
        log("building Chinese-CLIP ViT-B/16 and Mengzi-T5-base shapes with random weights")
        build_clip(bench.clip_dir)
        build_poet(bench.poet_dir, args.data)
        log("models saved")
        bench.measure_peak()
        attempt("Cold start: the `poemgen` command", lambda: cold_start(bench))
        bench.load_models()
        attempt("Keyword scoring: one photo against the whole vocabulary", lambda: keywords(bench))
        attempt("Poem writing: the base-size poet", lambda: poems(bench))
        attempt("Peak memory", lambda: memory(bench))
        attempt("FLOPs", lambda: flops(bench))
        if plan.train and not args.skip_training:
            attempt("Training throughput", lambda: training(bench))
        clip_params = num_params(bench.scorer.model)
        poet_params = num_params(bench.poet.model)
        tied_head = (bench.poet.model.lm_head.weight.data_ptr()
                     == bench.poet.model.shared.weight.data_ptr())
    total = time.perf_counter() - START
    log(f"total {total / 60:.1f} min")
    others = watch.others()
    quiet = ("- other processes during the run: unknown (no /proc/stat)" if others is None else
             f"- other processes during the run: {others[0]:.0f} CPU-seconds, "
             f"{others[1]:.1%} of the machine's CPU time"
             + (" (**disturbed**: rerun on a quiet machine)" if others[1] > DISTURBED else ""))

    # The report's order: keywords, poems, cold start, memory, FLOPs, training.
    order = ["Keyword", "Poem", "Cold", "Peak", "FLOPs", "Training"]
    sections.sort(key=lambda s: next(i for i, k in enumerate(order) if s.title.startswith(k)))
    header = [
        "# poemgen benchmarks", "",
        "Generated by `bench/run.py`; every number below was measured or computed by that "
        "run. Do not edit by hand: rerun the command.", "",
        f"- command: `{command}`",
        f"- date: {when}; total run time {total / 60:.1f} min"
        + (" (`--quick`: fewer repeats)" if args.quick else ""),
        *[f"- {line}" for line in about_machine],
        quiet,
        f"- code: poemgen at git {git_revision()}",
        f"- models: real shapes, random weights, built from configs and loaded with poemgen's "
        f"loading code: Chinese-CLIP ViT-B/16 ({clip_params:.1f}M parameters: RoBERTa-wwm-base "
        f"style text tower, vocabulary {CLIP_VOCAB}; ViT-B/16 image tower at 224 px; "
        f"projection 512) and Mengzi-T5-base ({poet_params:.1f}M parameters: 12+12 layers, "
        f"d_model 768, d_ff 2048, vocabulary 32128, gated-GELU"
        + (", LM head tied to the embeddings, as transformers builds it"
           if tied_head else "") + ")",
        "",
    ]
    report = "\n".join(header) + "\n" + "\n".join(s.markdown() for s in sections)
    if args.out:
        args.out.write_text(report, encoding="utf-8")
        log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
