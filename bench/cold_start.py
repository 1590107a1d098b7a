"""Section 3 of bench/run.py: the `poemgen` command's cold and warm start as a subprocess, and
section 4: the peak memory of those processes (and, on a GPU, of the sections in process)."""

from __future__ import annotations

import os
import sys

from common import Bench, Section, fmt_s, log, md_table, mib, run_process


# 3. Cold start of the `poemgen` command (and 4. its memory), run first so that nothing
# else is loaded while they run.
def cold_start(bench: Bench) -> Section:
    env = {k: v for k, v in os.environ.items() if k not in ("POEMGEN_POET", "POEMGEN_CLIP")}
    env.update(POEMGEN_HOME=str(bench.home), HF_HUB_OFFLINE="1")
    photo = str(bench.photos[0])
    common = ["--clip", str(bench.clip_dir), "--device", str(bench.r.device)]
    poem = ["-m", "poemgen", photo, *common, "--poet", str(bench.poet_dir), "--seed", "0"]
    runs = [
        ("Python + `import torch, transformers, poemgen` (the floor)", None,
         ["-c", "import torch, transformers, poemgen.cli, poemgen.keywords, poemgen.poet"], 1),
        ("`poemgen IMAGE`, embedding cache cold (empty `$POEMGEN_HOME`)", "cold", poem, 1),
        ("`poemgen IMAGE`, embedding cache warm (second run)", "warm", poem,
         bench.plan.warm_runs),
        ("`poemgen IMAGE --keywords-only`, cache warm", "keywords",
         ["-m", "poemgen", photo, *common, "--keywords-only"], bench.plan.warm_runs),
    ]
    rows, memory = [], []
    for label, key, argv, wanted in runs:
        measured = [bench.guard(label, lambda: run_process([sys.executable, *argv], env,
                                                          bench.tmp)) for _ in range(wanted)]
        measured = [m for m in measured if m]
        if not measured:
            rows.append([label, "failed"])
            memory.append((label, None))
            continue
        best, rss = min(m[0] for m in measured), max(m[1] for m in measured)
        log(f"{label}: {best:.1f} s, {mib(rss)}")
        if key:
            bench.results[f"cli_{key}"] = best
        rows.append([label, fmt_s(best)])
        memory.append((label, rss))
    bench.results["cli_memory"] = memory
    best_runs = f"best of {bench.plan.warm_runs}" if bench.plan.warm_runs > 1 else "one run"
    about = (f"Wall time of `python -m poemgen …` as a subprocess, from process start to exit "
             f"(one photo, one poem, `--device {bench.r.device}`, models from local folders; "
             f"their peak memory is in the next table). The cold run encodes the whole "
             f"vocabulary with the text tower and writes the embedding cache; warm runs read "
             f"it ({best_runs}). The first row is the price of starting Python and importing "
             "the libraries, which every run pays.")
    return Section("Cold start: the `poemgen` command", about,
                   md_table(["run", "wall time (s)"], rows))


# 4. Memory (of the subprocesses, and the GPU's in this process).
def memory(bench: Bench) -> Section:
    rows = [[label, mib(rss) if rss else "failed"]
            for label, rss in bench.results.get("cli_memory", [])]
    body = md_table(["process", "peak RSS"], rows)
    if bench.r.cuda:
        gpu = [["keyword scoring (section 1)", mib(bench.results.get("cuda_mem_keywords", 0))],
               ["poem writing (section 2, up to batch 64)",
                mib(bench.results.get("cuda_mem_poems", 0))]]
        body += "\n\n" + md_table(["in this process", "`torch.cuda.max_memory_allocated`"],
                                  gpu)
    about = ("Peak resident set size of each subprocess of the cold-start table "
             "(`ru_maxrss` from `os.wait4`, taken by a small wrapper process so that the "
             "child does not inherit this benchmark's own size)"
             + ("; on the GPU, the peak memory PyTorch allocated during each section."
                if bench.r.cuda else "."))
    return Section("Peak memory", about, body)
