"""Section 6 of bench/run.py: training throughput of the base-size poet."""

from __future__ import annotations

import contextlib
import io
import sys

from common import Bench, Section, readme_training_table


# 6. Training throughput.
def training(bench: Bench) -> Section:
    import train_throughput

    if bench.r.cuda:
        argv = ["--size", "base", "--batch-size", "64", "--mixed-precision", "bf16",
                "--steps", "30"]
    else:
        argv = ["--size", "tiny", "--batch-size", "8", "--mixed-precision", "no",
                "--steps", "200"]
    out = io.StringIO()
    old = sys.argv
    sys.argv = ["train_throughput.py", "--data", str(bench.args.data), *argv]
    try:
        with contextlib.redirect_stdout(out):
            train_throughput.main()
    finally:
        sys.argv = old
    table = "\n".join(l for l in out.getvalue().splitlines() if l.startswith("|"))
    about = (f"`bench/train_throughput.py {' '.join(argv)}`, run in this process: "
             "train/t5.py on a random-weight T5, rate after 5 warm-up steps.")
    if not bench.r.cuda:
        about += (" The tiny model only: the base size trains at a few examples per second "
                  "on this CPU, too slow for this run.")
        quoted = readme_training_table()
        if quoted:
            table += ("\n\nThe base size, as measured with the same script and quoted from "
                      "README.md (*How long it takes*), not rerun here:\n\n" + quoted)
    return Section("Training throughput", about, table)
