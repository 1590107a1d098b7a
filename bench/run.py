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

Random weights write nonsense, but every step runs the full model and every rule, which is what
is timed. A measurement that fails (an exception in poemgen, a `poemgen` process that exits
non-zero) is reported under its section's table and the others go on. Each section prints a Markdown table as soon as it is done; `--out` writes them all,
with the machine, the date and the exact command, into one file. No number in that file is typed
in: all are measured or computed here (FLOPs analytically from the configs, see `vit_flops`,
`text_flops`, `t5_prompt_flops`, `t5_step_flops`).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import io
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
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


# --- FLOPs, analytically from the configs ----------------------------------------------------
# 2 FLOPs per multiply-add. Counted: every matrix product (projections, attention scores and
# the attention-weighted sum, MLPs, patch embedding, output heads). Left out: LayerNorm, softmax,
# activations, biases and residual additions, which are O(tokens × width) and well under 1 %
# of the total at these sizes; also padding and finished rows in a batch ("useful" FLOPs).

def transformer_layer_macs(n: int, d: int, f: int, inner: int | None = None,
                           ffn_mats: int = 2) -> int:
    """One encoder layer over n tokens: Q, K, V and output projections (4·n·d·inner), attention
    scores and weighted sum (2·n²·inner), and an MLP of `ffn_mats` d×f matrices (2 for GELU,
    3 for gated GELU)."""
    inner = inner or d
    return 4 * n * d * inner + 2 * n * n * inner + ffn_mats * n * d * f


def vit_flops(config) -> float:
    """One image through Chinese-CLIP's image tower and projection.

    N = (image/patch)² patches + 1 class token = 197 for ViT-B/16 at 224 px; patch embedding
    (patches × 3·p² × d), 12 layers of `transformer_layer_macs(N, d, f)`, and the class token's
    projection (d × projection_dim).
    """
    v = config.vision_config
    patches = (v.image_size // v.patch_size) ** 2
    macs = patches * 3 * v.patch_size ** 2 * v.hidden_size
    macs += v.num_hidden_layers * transformer_layer_macs(patches + 1, v.hidden_size,
                                                         v.intermediate_size)
    macs += v.hidden_size * config.projection_dim
    return 2.0 * macs


def text_flops(config, tokens: int) -> float:
    """One text of `tokens` tokens (with [CLS] and [SEP]) through the text tower: 12 BERT layers,
    the BERT pooler (d²) and the projection of [CLS] (d × projection_dim)."""
    t = config.text_config
    macs = t.num_hidden_layers * transformer_layer_macs(tokens, t.hidden_size,
                                                        t.intermediate_size)
    macs += t.hidden_size ** 2 + t.hidden_size * config.projection_dim
    return 2.0 * macs


def t5_prompt_flops(config, s: int) -> float:
    """What a prompt of s tokens costs once per `generate` call: the encoder (per layer
    4·s·d·inner + 2·s²·inner + 3·s·d·f with gated GELU; inner = heads × d_kv) and the
    cross-attention keys and values each decoder layer computes from its output (2·s·d·inner)."""
    c = config
    inner, gates = c.num_heads * c.d_kv, 3 if c.is_gated_act else 2
    macs = c.num_layers * transformer_layer_macs(s, c.d_model, c.d_ff, inner, gates)
    macs += c.num_decoder_layers * 2 * s * c.d_model * inner
    return 2.0 * macs


def t5_step_flops(config, t: int, s: int) -> float:
    """One decoder step of one sequence with t positions cached, cross-attending to s encoder
    tokens: per layer self-attention (4·d·inner + 2·t·inner), cross-attention queries and output
    (2·d·inner + 2·s·inner), the gated-GELU MLP (3·d·f); then the LM head over the whole
    vocabulary (d × vocab)."""
    c = config
    inner, gates = c.num_heads * c.d_kv, 3 if c.is_gated_act else 2
    per_layer = 6 * c.d_model * inner + 2 * t * inner + 2 * s * inner + gates * c.d_model * c.d_ff
    return 2.0 * (c.num_decoder_layers * per_layer + c.d_model * c.vocab_size)


def lm_head_flops(config) -> float:
    return 2.0 * config.d_model * config.vocab_size


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

    # 3. Cold start of the `poemgen` command (and 4. its memory), run first so that nothing
    # else is loaded while they run.
    def cold_start(self) -> Section:
        env = {k: v for k, v in os.environ.items() if k not in ("POEMGEN_POET", "POEMGEN_CLIP")}
        env.update(POEMGEN_HOME=str(self.home), HF_HUB_OFFLINE="1")
        photo = str(self.photos[0])
        common = ["--clip", str(self.clip_dir), "--device", str(self.r.device)]
        poem = ["-m", "poemgen", photo, *common, "--poet", str(self.poet_dir), "--seed", "0"]
        runs = [
            ("Python + `import torch, transformers, poemgen` (the floor)", None,
             ["-c", "import torch, transformers, poemgen.cli, poemgen.keywords, poemgen.poet"], 1),
            ("`poemgen IMAGE`, embedding cache cold (empty `$POEMGEN_HOME`)", "cold", poem, 1),
            ("`poemgen IMAGE`, embedding cache warm (second run)", "warm", poem,
             self.plan.warm_runs),
            ("`poemgen IMAGE --keywords-only`, cache warm", "keywords",
             ["-m", "poemgen", photo, *common, "--keywords-only"], self.plan.warm_runs),
        ]
        rows, memory = [], []
        for label, key, argv, wanted in runs:
            measured = [self.guard(label, lambda: run_process([sys.executable, *argv], env,
                                                              self.tmp)) for _ in range(wanted)]
            measured = [m for m in measured if m]
            if not measured:
                rows.append([label, "failed"])
                memory.append((label, None))
                continue
            best, rss = min(m[0] for m in measured), max(m[1] for m in measured)
            log(f"{label}: {best:.1f} s, {mib(rss)}")
            if key:
                self.results[f"cli_{key}"] = best
            rows.append([label, fmt_s(best)])
            memory.append((label, rss))
        self.results["cli_memory"] = memory
        best_runs = f"best of {self.plan.warm_runs}" if self.plan.warm_runs > 1 else "one run"
        about = (f"Wall time of `python -m poemgen …` as a subprocess, from process start to exit "
                 f"(one photo, one poem, `--device {self.r.device}`, models from local folders; "
                 f"their peak memory is in the next table). The cold run encodes the whole "
                 f"vocabulary with the text tower and writes the embedding cache; warm runs read "
                 f"it ({best_runs}). The first row is the price of starting Python and importing "
                 "the libraries, which every run pays.")
        return Section("Cold start: the `poemgen` command", about,
                       md_table(["run", "wall time (s)"], rows))

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

    # 1. Keyword scoring.
    def keywords(self) -> Section:
        import torch
        import torch.nn.functional as F

        from poemgen.images import load_image
        from poemgen.keywords import KeywordScorer, Vocabulary, encode_vocabulary

        r, plan, scorer = self.r, self.plan, self.scorer
        if r.cuda:
            torch.cuda.reset_peak_memory_stats()
        model, processor, vocab = scorer.model, scorer.processor, scorer.vocabulary
        templates = self.templates
        config = model.config
        image = load_image(self.photos[0])
        images = [load_image(p) for p in self.photos]
        pixels = processor(images=[image], return_tensors="pt").to(r.device)
        texts = [t.format(w) for w in vocab.words for t in templates]
        lengths = [len(ids) for ids in processor.tokenizer(texts).input_ids]
        image_flops = vit_flops(config)
        all_flops = image_flops + sum(text_flops(config, n) for n in lengths)
        self.results["text_tokens_mean"] = sum(lengths) / len(lengths)
        n_words = len(vocab.words)

        @torch.inference_mode()
        def floor():
            return model.get_image_features(**pixels).pooler_output

        def poemgen_one():
            return scorer.score([image])

        # (a) and (b), interleaved so that drift hits both alike.
        ok_a = self.guard("(a) `KeywordScorer.score`",
                          lambda: [r.once(poemgen_one) for _ in range(2)]) is not None
        ok_b = self.guard("(b) `get_image_features`",
                          lambda: [r.once(floor) for _ in range(2)]) is not None
        a_times, b_times = [], []
        for _ in range(plan.image_repeats):
            if ok_b:
                b_times.append(r.once(floor)[0])
            if ok_a:
                a_times.append(r.once(poemgen_one)[0])
        a = statistics.median(a_times) if a_times else None
        b = statistics.median(b_times) if b_times else None
        log(f"poemgen {a and fmt_s(a)} s, image tower {b and fmt_s(b)} s per image")

        # The parts of (a) beyond the image tower, to explain the difference.
        prep = self.guard("preprocessing", lambda: statistics.median(r.times(
            lambda: processor(images=[image], return_tensors="pt"), plan.image_repeats)))
        choose = None
        if ok_b:
            embedding = F.normalize(r.once(floor)[1].float(), dim=-1)
            choose = self.guard("`keywords_for`", lambda: statistics.median(
                r.times(lambda: scorer.keywords_for(embedding, 5), plan.image_repeats)))

        # (c) batched, uncached: encode the vocabulary, then score.
        if plan.uncached_words and plan.uncached_words < n_words:
            step = n_words // plan.uncached_words
            subset = Vocabulary(vocab.words[::step][:plan.uncached_words],
                                vocab.categories[::step][:plan.uncached_words])
        else:
            subset = vocab

        def uncached():
            encode_s, embeddings = r.once(lambda: encode_vocabulary(
                model, processor, subset.words, templates, r.device))
            fresh = KeywordScorer(model, processor, subset, embeddings.to(r.device), r.device)
            score_s, _ = r.once(lambda: fresh.score([image]))
            return encode_s * n_words / len(subset.words) + score_s

        c = self.guard("(c) `encode_vocabulary` + score", uncached)
        c_note = "" if subset is vocab else (f" (encoding timed on {len(subset.words)} words, "
                                             f"× {n_words / len(subset.words):.1f})")
        log(f"uncached {c and fmt_s(c)} s per image{c_note}")

        # (d) naive: every text of every word encoded alone, a cosine per word in Python.
        step = max(1, n_words // plan.naive_words)
        naive_words = vocab.words[::step][:plan.naive_words]

        @torch.inference_mode()
        def naive():
            start = time.perf_counter()
            inputs = processor(images=[image], return_tensors="pt").to(r.device)
            img = F.normalize(model.get_image_features(**inputs).pooler_output.float(), dim=-1)[0]
            r.sync()
            image_part = time.perf_counter() - start
            scores = []
            for word in naive_words:
                vectors = []
                for template in templates:
                    text = processor(text=[template.format(word)], return_tensors="pt").to(r.device)
                    vectors.append(F.normalize(
                        model.get_text_features(**text).pooler_output.float(), dim=-1)[0])
                vector = F.normalize(torch.stack(vectors).mean(dim=0), dim=-1)
                scores.append(float(vector @ img))
            best = sorted(zip(scores, naive_words), reverse=True)[:5]
            r.sync()
            return image_part, time.perf_counter() - start - image_part, best

        def naive_extrapolated():
            image_part, loop_part, _ = r.once(naive)[1]
            return image_part + loop_part * n_words / len(naive_words)

        d = self.guard("(d) naive loop", naive_extrapolated)
        log(f"naive {d and fmt_s(d)} s per image (extrapolated from {len(naive_words)} words)")

        # A batch of 8 photos.
        batch = self.guard("a batch of 8 photos", lambda: statistics.median(
            r.times(lambda: scorer.score(images), plan.batch_repeats)))
        self.results.update(score_a=a, score_b=b, score_c=c, score_d=d,
                            score_batch=batch / 8 if batch else None)

        def row(label, seconds, flops, shown=None):
            if seconds is None:
                return [label, "failed", f"{flops / 1e9:,.1f}", "-", "-", "-"]
            return [label, shown or fmt_s(seconds), f"{flops / 1e9:,.1f}",
                    fmt_rate(flops, seconds), self.of_peak(flops, seconds),
                    fmt_ratio(seconds / a) if a else "-"]

        rows = [
            row("(a) poemgen: `KeywordScorer.score`, text embeddings cached", a, image_flops),
            row("(b) image tower alone: `get_image_features` on the preprocessed image (floor)",
                b, image_flops),
            row("(c) batched, uncached: `encode_vocabulary` (256 texts a batch) + score" + c_note,
                c, all_flops),
            row(f"(d) naive: each of the {len(templates) * n_words:,} texts encoded alone, cosine "
                f"in a Python loop (timed on {len(naive_words)} words, extrapolated linearly to "
                f"{n_words:,})", d, all_flops),
            row("poemgen, a batch of 8 photos: `KeywordScorer.score(8 images)`",
                batch / 8 if batch else None, image_flops,
                f"{fmt_s(batch / 8)} ({8 / batch:.2f} images/s)" if batch else None),
        ]
        table = md_table(["method", "s per image", "GFLOP per image", "GFLOP/s", "of peak",
                          "time vs (a)"], rows)

        def share(x):
            return f"{x / a:.0%}" if a and x is not None else "-"

        parts = md_table(["part of (a)", "s", "share of (a)"], [
            [f"preprocessing: the processor on a {PHOTO_SIZE[0]}×{PHOTO_SIZE[1]} photo "
             "(resize, crop, normalise)", fmt_s(prep) if prep is not None else "failed",
             share(prep)],
            ["image tower (b)", fmt_s(b) if b else "failed", share(b)],
            ["keyword choice: `keywords_for` (similarities, softmax, MMR, top 5)",
             fmt_s(choose) if choose is not None else "failed", share(choose)],
        ])
        verdict = []
        if a and b:
            over = a / b - 1
            verdict.append(f"poemgen vs the image-tower floor: {over:+.1%} per image (goal: "
                           f"within 10 %: {'met' if over <= 0.10 else 'NOT met'}).")
        if a and d:
            verdict.append(f"Naive vs poemgen: {d / a:,.0f}× slower (goal: at least 50×: "
                           f"{'met' if d / a >= 50 else 'NOT met'}).")
        if a and c:
            verdict.append(f"Uncached batched vs poemgen: {c / a:,.0f}×, the cost the embedding "
                           "cache saves on every run after the first.")
        if r.cuda:
            self.results["cuda_mem_keywords"] = torch.cuda.max_memory_allocated()
        about = (f"One {PHOTO_SIZE[0]}×{PHOTO_SIZE[1]} photo (already decoded) against the full "
                 f"default vocabulary: {n_words:,} words × {len(templates)} templates = "
                 f"{n_words * len(templates):,} texts (mean {self.results['text_tokens_mean']:.1f} "
                 f"tokens with [CLS] and [SEP]). {r.precision}{' autocast' if r.cuda else ''}, "
                 f"median of {plan.image_repeats} runs for (a) and (b) (interleaved), one run for "
                 "(c) and (d). GFLOP/s uses the analytic FLOPs below; (c) and (d) count the text "
                 "tower's FLOPs without padding. The naive loop encodes the image once, as the "
                 "simplest tutorials' loop over labels does, and then each keyword's texts one "
                 f"at a time. Image processor: `{type(processor.image_processor).__name__}`.")
        return Section("Keyword scoring: one photo against the whole vocabulary", about,
                       table + "\n\n" + parts + "\n\n" + " ".join(verdict))

    @property
    def templates(self):
        from poemgen.keywords import DEFAULT_TEMPLATES

        return DEFAULT_TEMPLATES

    # 2. Poem writing.
    def poems(self) -> Section:
        torch = self.r.torch
        from poemgen.images import load_image
        from poemgen.options import PoemOptions
        from poemgen.pipeline import Pipeline

        r, plan, poet = self.r, self.plan, self.poet
        if r.cuda:
            torch.cuda.reset_peak_memory_stats()
        for _, lines, chars in FORMS:  # first-call costs: rule tables per rhyme system
            for label, rules in RULES.items():
                self.guard(f"warm-up, {label}", lambda: poet.write(
                    KEYWORD_LISTS[:1], PoemOptions(lines=lines, chars=chars, **rules)))
        batches = (("1 poem", 1, 1), ("1 list × 8 candidates", 1, 8), ("8 lists × 1", 8, 1))
        rows, prompt_lengths, token_counts = [], [], []

        def measure(keywords, options):
            times = []
            for _ in range(plan.poem_repeats):
                seconds, written = r.once(lambda: poet.write(keywords, options))
                times.append(seconds)
            return statistics.median(times), written

        for name, lines, chars in FORMS:
            for batch_name, lists, candidates in batches:
                baseline = None
                for label, rules in RULES.items():
                    options = PoemOptions(lines=lines, chars=chars, candidates=candidates,
                                          seed=0, **rules)
                    keywords = KEYWORD_LISTS[:lists]
                    measured = self.guard(f"{name}, {batch_name}, {label}",
                                          lambda: measure(keywords, options))
                    if measured is None:
                        rows.append([name, batch_name, label, "failed"] + ["-"] * 6)
                        continue
                    best, written = measured
                    poems = sum(len(c) for c in written)
                    tokens = sum(v.tokens + lines for c in written for v in c)  # + EOS a line
                    flops, lengths = poem_flops(poet, keywords, written, options)
                    prompt_lengths += lengths
                    token_counts.append(tokens / poems / lines)
                    per_token = best / tokens
                    baseline = baseline or per_token
                    rows.append([name, batch_name, label, fmt_s(best / poems),
                                 f"{poems / best:.2f}", f"{per_token * 1000:.1f}",
                                 f"{per_token / baseline - 1:+.0%}",
                                 f"{flops / poems / 1e9:.1f}", fmt_rate(flops, best),
                                 self.of_peak(flops, best)])
                    log(f"{name} {batch_name} {label}: {best / poems:.3f} s per poem")

        # From photos: CLIP, the poet and the reranking, as `Pipeline.write_batch` runs them.
        pipe = Pipeline(self.scorer, poet)
        photos = [load_image(p) for p in self.photos]

        def from_photos():
            r.once(lambda: pipe.write_batch(photos[:1], seed=0))
            return statistics.median(r.times(lambda: pipe.write_batch(photos, seed=0),
                                             plan.poem_repeats, warmup=0))

        seconds = self.guard("8 photos → 8 poems", from_photos)
        label = ["五绝", "8 photos → 8 poems (`Pipeline.write_batch`)",
                 "新韵 loose + no repeats (default)"]
        rows.append(label + ([fmt_s(seconds / 8), f"{8 / seconds:.2f}"] if seconds
                             else ["failed", "-"]) + ["-"] * 5)
        self.results["pipeline_per_poem"] = seconds / 8 if seconds else None
        if prompt_lengths:
            self.results["prompt_tokens_mean"] = sum(prompt_lengths) / len(prompt_lengths)
            self.results["line_tokens_mean"] = sum(token_counts) / len(token_counts)
        table = md_table(["form", "batch", "rules", "s per poem", "poems/s", "ms per token",
                          "rules' cost per token", "GFLOP per poem", "GFLOP/s", "of peak"], rows)

        throughput = ""
        sizes = (8, 32, 64) if r.cuda else plan.throughput
        if sizes:
            trows, rates = [], {}
            options = PoemOptions(seed=0)
            for size in sizes:
                keywords = [KEYWORD_LISTS[i % len(KEYWORD_LISTS)] for i in range(size)]
                seconds = self.guard(f"throughput, batch {size}", lambda: statistics.median(
                    r.times(lambda: poet.write(keywords, options),
                            max(1, plan.poem_repeats - 1), warmup=0)))
                if seconds is None:
                    trows.append([size, "failed", "-", ""])
                    continue
                rates[size] = size / seconds
                trows.append([size, fmt_s(seconds), f"{size / seconds:.2f}", ""])
                log(f"throughput batch {size}: {size / seconds:.2f} poems/s")
            if rates:
                best = max(rates, key=rates.get)
                self.results["poems_per_s"] = (best, rates[best])
                for row in trows:
                    if row[0] == best:
                        row[3] = "best"
            throughput = ("\n\nPoems per second (五绝, default rules, 1 candidate, one batch of "
                          "keyword lists):\n\n"
                          + md_table(["batch", "s per batch", "poems/s", ""], trows))
        if r.cuda:
            self.results["cuda_mem_poems"] = torch.cuda.max_memory_allocated()
        about = (f"The base-size poet ({r.precision}), writing line by line with poemgen's "
                 "default sampling (temperature 0.9, top-p 0.9, seed 0); median of "
                 f"{plan.poem_repeats} run{'s' if plan.poem_repeats > 1 else ''} per row. "
                 "\"length only\" keeps just the exact line length (`rhyme=\"none\", "
                 "tones=\"none\", no_repeat=False`), the floor every poem pays; the default "
                 "adds 中华新韵, loose tones and no repeated characters. Tokens are the "
                 "characters' tokens plus one end-of-line token per line; \"rules' cost per "
                 "token\" compares ms per token with the length-only row above it. Random "
                 "weights end a line only where the constraints force it, which poemgen does "
                 "at exactly the line's length. GFLOP per poem counts the encoder once per line "
                 "and prompt and the decoder once per generated token (see FLOPs). The last row "
                 "starts from 8 photos: keyword scoring, the poems and the reranking's text "
                 "encoding, as `poemgen.load(...).write_batch` runs them.")
        return Section("Poem writing: the base-size poet", about, table + throughput)

    # 5. FLOPs.
    def flops(self) -> Section:
        clip = self.scorer.model.config if self.scorer else clip_config()
        t5 = self.poet.model.config
        tokens = self.results.get("text_tokens_mean", 8.0)
        s = self.results.get("prompt_tokens_mean", 24.0)
        per_line = self.results.get("line_tokens_mean", 5.0)
        t = max(1, round(1 + per_line / 2))
        v = clip.vision_config
        rows = [
            [f"Chinese-CLIP image tower, per image ({(v.image_size // v.patch_size) ** 2 + 1} "
             "tokens)", f"{vit_flops(clip) / 1e9:.2f}", "`vit_flops`"],
            [f"Chinese-CLIP text tower, per text (mean {tokens:.1f} tokens)",
             f"{text_flops(clip, round(tokens)) / 1e9:.3f}", "`text_flops`"],
            [f"T5 encoder + cross-attention keys/values, per prompt (mean {s:.0f} tokens)",
             f"{t5_prompt_flops(t5, round(s)) / 1e9:.3f}", "`t5_prompt_flops`"],
            [f"T5 decoder, per generated token (t = {t} cached, s = {s:.0f})",
             f"{t5_step_flops(t5, t, round(s)) / 1e9:.3f}", "`t5_step_flops`"],
            [f"… of which the LM head ({t5.d_model} × {t5.vocab_size})",
             f"{lm_head_flops(t5) / 1e9:.3f}", "d × vocab"],
        ]
        if self.peak:
            rows.append([f"this machine's measured peak: {self.peak[1]}",
                         f"{self.peak[0] / 1e9:,.0f} GFLOP/s", "timed with torch"])
        about = ("Computed analytically from the configs (2 FLOPs per multiply-add; every matrix "
                 "product counted, LayerNorm, softmax, activations and biases left out; formulas "
                 "in the docstrings of `bench/run.py`). The tables above divide these by the "
                 "measured times; \"of peak\" compares with the matmul rate in the last row, "
                 "timed here on the same device, for context only.")
        return Section("FLOPs", about, md_table(["computation", "GFLOP", "formula"], rows))

    # 4. Memory (of the subprocesses, and the GPU's in this process).
    def memory(self) -> Section:
        rows = [[label, mib(rss) if rss else "failed"]
                for label, rss in self.results.get("cli_memory", [])]
        body = md_table(["process", "peak RSS"], rows)
        if self.r.cuda:
            gpu = [["keyword scoring (section 1)", mib(self.results.get("cuda_mem_keywords", 0))],
                   ["poem writing (section 2, up to batch 64)",
                    mib(self.results.get("cuda_mem_poems", 0))]]
            body += "\n\n" + md_table(["in this process", "`torch.cuda.max_memory_allocated`"],
                                      gpu)
        about = ("Peak resident set size of each subprocess of the cold-start table "
                 "(`ru_maxrss` from `os.wait4`, taken by a small wrapper process so that the "
                 "child does not inherit this benchmark's own size)"
                 + ("; on the GPU, the peak memory PyTorch allocated during each section."
                    if self.r.cuda else "."))
        return Section("Peak memory", about, body)

    # 6. Training throughput.
    def training(self) -> Section:
        import train_throughput

        if self.r.cuda:
            argv = ["--size", "base", "--batch-size", "64", "--mixed-precision", "bf16",
                    "--steps", "30"]
        else:
            argv = ["--size", "tiny", "--batch-size", "8", "--mixed-precision", "no",
                    "--steps", "200"]
        out = io.StringIO()
        old = sys.argv
        sys.argv = ["train_throughput.py", "--data", str(self.args.data), *argv]
        try:
            with contextlib.redirect_stdout(out):
                train_throughput.main()
        finally:
            sys.argv = old
        table = "\n".join(l for l in out.getvalue().splitlines() if l.startswith("|"))
        about = (f"`bench/train_throughput.py {' '.join(argv)}`, run in this process: "
                 "train/t5.py on a random-weight T5, rate after 5 warm-up steps.")
        if not self.r.cuda:
            about += (" The tiny model only: the base size trains at a few examples per second "
                      "on this CPU, too slow for this run.")
            quoted = readme_training_table()
            if quoted:
                table += ("\n\nThe base size, as measured with the same script and quoted from "
                          "README.md (*How long it takes*), not rerun here:\n\n" + quoted)
        return Section("Training throughput", about, table)


def one_line(error: Exception) -> str:
    return " ".join(str(error).split())[:300]


def poem_flops(poet, keywords, written, options) -> tuple[float, list[int]]:
    """Useful FLOPs of `poet.write(keywords, options)`: per poem and line, the prompt once
    (`t5_prompt_flops`) and each generated token (`t5_step_flops`, the line's tokens spread
    evenly over its lines)."""
    config, form = poet.model.config, options.form
    total, lengths = 0.0, []
    for words, verses in zip(keywords, written):
        for verse in verses:
            per_line = (verse.tokens + form.lines) / form.lines
            for i in range(form.lines):
                previous = verse.lines[:i]
                text = poet.format.encoder_text(form, words, previous, options.hint,
                                                options.imitate)
                s = len(poet.tokenizer(text).input_ids)
                prefix = len(poet.tokenizer(poet.format.decoder_prefix(previous),
                                            add_special_tokens=False).input_ids) if previous else 0
                lengths.append(s)
                total += t5_prompt_flops(config, s)
                total += prefix * t5_step_flops(config, prefix, s)
                for step in range(round(per_line)):
                    total += t5_step_flops(config, prefix + step + 1, s)
    return total, lengths


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
        attempt("Cold start: the `poemgen` command", bench.cold_start)
        bench.load_models()
        attempt("Keyword scoring: one photo against the whole vocabulary", bench.keywords)
        attempt("Poem writing: the base-size poet", bench.poems)
        attempt("Peak memory", bench.memory)
        attempt("FLOPs", bench.flops)
        if plan.train and not args.skip_training:
            attempt("Training throughput", bench.training)
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
