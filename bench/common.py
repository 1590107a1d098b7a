"""What the benchmarks share: the real-size models with random weights (built from configs, no
download), the device and its timer, the context the sections of bench/run.py measure in, the
report's tables, and the machine's description. Every benchmark script imports from here."""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import re
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before anything imports huggingface_hub
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
DATA = ROOT / ".bench-data" / "ccpc"  # the default --data: a folder written by data/prepare.py
sys.path.insert(0, str(BENCH))

# The 8 keyword lists poems are written from (cycled for bigger batches).
KEYWORD_LISTS = [["明月", "孤舟", "江"], ["青山", "白云", "松"], ["落日", "长河", "大漠"],
                 ["梅花", "雪", "寒"], ["杨柳", "春风", "燕子"], ["秋风", "落叶", "雁"],
                 ["细雨", "杏花", "江南"], ["夕阳", "古道", "西风"]]
RULES = {"length only": dict(rhyme="none", tones="none", no_repeat=False),
         "新韵 loose + no repeats (default)": {}}
FORMS = (("五绝", 4, 5), ("七绝", 4, 7))
PHOTO_SIZE = (640, 480)
BERT_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
CLIP_VOCAB = 21128
DISTURBED = 0.05  # other processes' share of the CPUs above which a section is flagged


@dataclass(frozen=True)
class Plan:
    """How much of each measurement to do."""

    image_repeats: int       # timed single-image scorings (table 1), median reported
    batch_repeats: int       # timed 8-image batches
    naive_words: int         # words the naive loop is timed on (then extrapolated)
    uncached_words: int      # words encoded for the uncached row; 0: the whole vocabulary
    poem_repeats: int        # timed runs per poem row, median reported
    warm_runs: int           # warm `poemgen` subprocesses per row, best reported
    throughput: tuple[int, ...]  # batch sizes for poems per second
    train: bool              # run the training-throughput section


FULL = Plan(image_repeats=10, batch_repeats=3, naive_words=100, uncached_words=0,
            poem_repeats=3, warm_runs=2, throughput=(8, 32), train=True)
QUICK = Plan(image_repeats=3, batch_repeats=1, naive_words=20, uncached_words=64,
             poem_repeats=1, warm_runs=1, throughput=(), train=False)


# --- small helpers ---------------------------------------------------------------------------

def log(message: str) -> None:
    print(f"[{time.perf_counter() - START:6.1f}s] {message}", file=sys.stderr, flush=True)


def md_table(headers: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join("---" for _ in headers) + " |"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def fmt_s(seconds: float) -> str:
    if seconds >= 100:
        return f"{seconds:,.0f}"
    if seconds >= 10:
        return f"{seconds:.1f}"
    if seconds >= 1:
        return f"{seconds:.2f}"
    return f"{seconds:.3f}" if seconds >= 0.01 else f"{seconds:.4f}"


def fmt_rate(flops: float, seconds: float) -> str:
    return f"{flops / seconds / 1e9:,.0f}" if seconds > 0 else "-"


def fmt_ratio(x: float) -> str:
    return f"{x:,.0f}×" if x >= 10 else f"{x:.2f}×"


def mib(n_bytes: float) -> str:
    return f"{n_bytes / 2**20:,.0f} MiB"


class Runner:
    """Device, precision and a timer that waits for the device."""

    def __init__(self, device: str, precision: str):
        import torch

        self.torch = torch
        self.device = torch.device(device)
        self.cuda = self.device.type == "cuda"
        self.precision = precision
        self.dtype = torch.bfloat16 if precision == "bf16" else torch.float32

    def sync(self) -> None:
        if self.cuda:
            self.torch.cuda.synchronize(self.device)

    def autocast(self):
        """CLIP runs in fp32 weights with bf16 autocast on a GPU; nothing on the CPU."""
        if self.cuda and self.precision == "bf16":
            return self.torch.autocast("cuda", dtype=self.torch.bfloat16)
        return contextlib.nullcontext()

    def once(self, fn) -> tuple[float, object]:
        self.sync()
        start = time.perf_counter()
        with self.autocast():
            result = fn()
        self.sync()
        return time.perf_counter() - start, result

    def times(self, fn, repeats: int, warmup: int = 1) -> list[float]:
        for _ in range(warmup):
            self.once(fn)
        return [self.once(fn)[0] for _ in range(repeats)]


# --- the models -----------------------------------------------------------------------------

def clip_config():
    from transformers import ChineseCLIPConfig

    return ChineseCLIPConfig(
        text_config=dict(vocab_size=CLIP_VOCAB, hidden_size=768, num_hidden_layers=12,
                         num_attention_heads=12, intermediate_size=3072,
                         max_position_embeddings=512, type_vocab_size=2),
        vision_config=dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                           intermediate_size=3072, image_size=224, patch_size=16),
        projection_dim=512)


def build_clip(folder: Path) -> None:
    """Chinese-CLIP ViT-B/16 with random weights and a 21128-entry character vocabulary."""
    import torch
    from transformers import (BertTokenizer, ChineseCLIPImageProcessor, ChineseCLIPModel,
                              ChineseCLIPProcessor)

    from poemgen.keywords import DEFAULT_TEMPLATES, Vocabulary

    tokens = BERT_SPECIALS + [chr(c) for c in range(0x4E00, 0xA000)] + list("，。、！？：；“”‘’（）《》…—")
    tokens += [f"[unused{i}]" for i in range(1, CLIP_VOCAB - len(tokens) + 1)]
    assert len(tokens) == CLIP_VOCAB
    needed = {c for text in Vocabulary.default().words + DEFAULT_TEMPLATES for c in text} - set("{}")
    missing = needed - set(tokens)
    assert not missing, f"vocabulary characters missing from the CLIP vocabulary: {missing}"
    folder.mkdir(parents=True)
    vocab_file = folder / "vocab.txt"
    vocab_file.write_text("\n".join(tokens) + "\n", encoding="utf-8")
    tokenizer = BertTokenizer(vocab_file=str(vocab_file))
    images = ChineseCLIPImageProcessor(size={"shortest_edge": 224},
                                       crop_size={"height": 224, "width": 224})
    torch.manual_seed(0)
    ChineseCLIPModel(clip_config()).save_pretrained(folder)
    ChineseCLIPProcessor(image_processor=images, tokenizer=tokenizer).save_pretrained(folder)


def build_poet(folder: Path, data: Path) -> None:
    from train_throughput import build_model

    from poemgen.prompt import write_metadata

    build_model(folder, data, "base")
    write_metadata(folder)


def make_photo(path: Path, seed: int) -> Path:
    """A synthetic 640×480 'photo': smooth colour gradients with noise, saved as JPEG."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    w, h = PHOTO_SIZE
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    base = rng.uniform(40, 200, 3)
    tilt = rng.uniform(-0.2, 0.2, (3, 2))
    channels = [base[i] + tilt[i, 0] * x + tilt[i, 1] * y for i in range(3)]
    pixels = np.stack(channels, axis=-1) + rng.normal(0, 12, (h, w, 3))
    Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(path, quality=90)
    return path


def num_params(model) -> float:
    return sum(p.numel() for p in model.parameters()) / 1e6


# --- sections --------------------------------------------------------------------------------

@dataclass
class Section:
    title: str
    about: str
    body: str = ""

    def markdown(self) -> str:
        return f"## {self.title}\n\n{self.about}\n\n{self.body}".rstrip() + "\n"


class Bench:
    def __init__(self, args, plan: Plan, runner: Runner, tmp: Path):
        self.args, self.plan, self.r, self.tmp = args, plan, runner, tmp
        self.results: dict = {}
        self.failures: list[str] = []  # the current section's failed measurements
        self.clip_dir, self.poet_dir = tmp / "clip", tmp / "poet"
        self.home = tmp / "poemgen-home"
        self.photos = [make_photo(tmp / f"photo{i}.jpg", seed=i) for i in range(8)]
        self.scorer = self.poet = None
        self.peak = None

    def guard(self, label: str, fn, default=None):
        """fn(), or `default` when it fails: the failure is logged and reported under the
        section's table, and the other measurements go on."""
        try:
            return fn()
        except Exception as e:
            traceback.print_exc()
            self.failures.append(f"{label}: `{type(e).__name__}: {one_line(e)}`")
            log(f"FAILED: {label}")
            return default

    # 0. The machine's rough peak, for context.
    def measure_peak(self) -> None:
        torch = self.r.torch
        n, dtype = (8192, torch.bfloat16) if self.r.cuda else (2048, torch.float32)
        a = torch.randn(n, n, device=self.r.device, dtype=dtype)
        b = torch.randn(n, n, device=self.r.device, dtype=dtype)
        best = min(self.r.times(lambda: a @ b, repeats=5, warmup=2))
        self.peak = (2.0 * n ** 3 / best, f"{'bf16' if self.r.cuda else 'fp32'} {n}×{n} matmul")
        log(f"peak: {self.peak[0] / 1e9:,.0f} GFLOP/s ({self.peak[1]})")

    def of_peak(self, flops: float, seconds: float | None) -> str:
        if not (self.peak and seconds):
            return "-"
        share = flops / seconds / self.peak[0]
        return f"{share:.0%}" if share >= 0.1 else f"{share:.1%}"

    def load_models(self) -> None:
        torch = self.r.torch
        from poemgen.keywords import KeywordScorer
        from poemgen.poet import Poet

        seconds, self.scorer = self.r.once(lambda: KeywordScorer.load(
            str(self.clip_dir), self.r.device, cache_dir=self.home / "embeddings"))
        self.results["load_scorer"] = (seconds, self.scorer.cache_hit)
        seconds, self.poet = self.r.once(lambda: Poet.load(str(self.poet_dir), self.r.device))
        if self.r.cuda and self.r.precision == "bf16":
            self.poet.model.to(torch.bfloat16)
        self.results["load_poet"] = seconds
        log(f"loaded models in-process (embedding cache hit: {self.scorer.cache_hit})")

    @property
    def templates(self):
        from poemgen.keywords import DEFAULT_TEMPLATES

        return DEFAULT_TEMPLATES


def one_line(error: Exception) -> str:
    return " ".join(str(error).split())[:300]


def readme_training_table() -> str:
    """The rows of README.md's training table, quoted (header and base-size rows)."""
    try:
        text = (ROOT / "README.md").read_text("utf-8")
    except OSError:
        return ""
    found = re.search(r"\n(\| device \(.*?\n(?:\|.*\n)+)", text)
    return found.group(1).strip() if found else ""


# Starts the command, waits for it with os.wait4 and writes its wall time, peak RSS and exit
# status. A small process of its own, because a child forked from this big one would inherit
# this process's resident size as its starting `ru_maxrss`.
_MEASURE = """
import os, subprocess, sys, time
start = time.perf_counter()
child = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(child.pid, 0)
seconds = time.perf_counter() - start
child.returncode = os.waitstatus_to_exitcode(status)
with open(sys.argv[1], "w") as f:
    f.write(f"{seconds} {usage.ru_maxrss} {child.returncode}")
"""


def run_process(argv: list[str], env: dict, cwd: Path) -> tuple[float, int, str]:
    """Wall time, peak RSS (bytes) and stdout of one child process; fails loudly if it fails."""
    out, err, measured = cwd / "child.out", cwd / "child.err", cwd / "child.rusage"
    with open(out, "wb") as o, open(err, "wb") as e:
        subprocess.run([sys.executable, "-c", _MEASURE, str(measured), *argv], stdout=o,
                       stderr=e, env=env, cwd=cwd, check=True)
    seconds, maxrss, code = measured.read_text().split()
    if int(code) != 0:
        stderr = err.read_text("utf-8", "replace")
        print(stderr[-3000:], file=sys.stderr)
        last = [line for line in stderr.splitlines() if line.strip()][-1:] or ["no message"]
        raise RuntimeError(f"exit status {code}: {last[0].strip()}")
    rss = int(maxrss) * (1 if sys.platform == "darwin" else 1024)
    return float(seconds), rss, out.read_text("utf-8", "replace")


class CpuWatch:
    """How much CPU time other processes took while this run went on (Linux: /proc/stat), so
    a disturbed run shows it."""

    def __init__(self):
        self.start = self._busy(), self._ours(), time.perf_counter()

    @staticmethod
    def _busy() -> float | None:
        try:
            fields = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
        except (OSError, ValueError):
            return None
        busy = sum(fields[:8]) - fields[3] - fields[4]  # all but idle and iowait; steal included
        return busy / os.sysconf("SC_CLK_TCK")

    @staticmethod
    def _ours() -> float:
        import resource

        own = resource.getrusage(resource.RUSAGE_SELF)
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime

    def others(self) -> tuple[float, float] | None:
        """CPU-seconds used by others, and their share of all CPUs' time, since the start."""
        busy, ours, start = self.start
        now = self._busy()
        if busy is None or now is None:
            return None
        other = max(0.0, (now - busy) - (self._ours() - ours))
        return other, other / ((time.perf_counter() - start) * (os.cpu_count() or 1))


def machine(runner: Runner) -> list[str]:
    import torch
    import transformers

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        kb = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))
        memory = f", {kb / 2**20:.0f} GiB RAM"
    except (OSError, AttributeError):
        pass
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "none"
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    return [f"CPU: {cpu}, {os.cpu_count()} logical CPUs, torch uses {torch.get_num_threads()} "
            f"threads{memory}",
            f"GPU: {gpu}; benchmarks ran on `{runner.device}` in {runner.precision}",
            f"software: Python {platform.python_version()}, torch {torch.__version__}, "
            f"transformers {transformers.__version__}, {platform.system()} {platform.release()}",
            f"load average before the run (1, 5, 15 min): {load}"]


def git_revision() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True,
                              capture_output=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=ROOT, text=True, capture_output=True).stdout.strip()
        return head + (" with uncommitted changes" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


START = time.perf_counter()


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    """--device and --data, shared by the benchmarks that build the real-size models."""
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--data", type=Path, default=DATA,
                   help="a folder written by data/prepare.py (the poet's tokenizer is trained "
                        "on its poems; default .bench-data/ccpc)")


def runner_for(p: argparse.ArgumentParser, args: argparse.Namespace) -> "Runner":
    """The Runner for --device (bf16 on cuda), once --data and the device are checked."""
    if not (args.data / "train.jsonl").is_file():
        p.error(f"--data {args.data}: no train.jsonl; run data/prepare.py first")
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA device here")
    return Runner(args.device, "bf16" if args.device == "cuda" else "fp32")


@contextlib.contextmanager
def poemgen_server(source: Path, clip: Path, home: Path):
    """`poemgen serve` of the checkout in `source` (the shipped poet, no rate limit) on a free
    port, once it answers /healthz; yields the process and its base URL, and stops it after."""
    import socket

    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(source), "POEMGEN_HOME": str(home),
           "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "poemgen", "serve", "--clip", str(clip), "--poet", "mini",
               "--device", "cpu", "--port", str(port), "--rate", "0"]
    server = subprocess.Popen(command, env=env, cwd=source, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(3000):
            if server.poll() is not None:
                raise RuntimeError(f"the server exited: {server.stderr.read()[-2000:]}")
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        yield server, base
    finally:
        server.terminate()
        server.wait(30)

