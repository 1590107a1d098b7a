"""Section 1 of bench/run.py: keyword scoring, one photo against the whole vocabulary."""

from __future__ import annotations

import statistics
import time

from common import PHOTO_SIZE, Bench, Section, fmt_rate, fmt_ratio, fmt_s, log, md_table
from flops import text_flops, vit_flops


# 1. Keyword scoring.
def keywords(bench: Bench) -> Section:
    import torch
    import torch.nn.functional as F

    from poemgen.images import load_image
    from poemgen.keywords import KeywordScorer, Vocabulary, encode_vocabulary

    r, plan, scorer = bench.r, bench.plan, bench.scorer
    if r.cuda:
        torch.cuda.reset_peak_memory_stats()
    model, processor, vocab = scorer.model, scorer.processor, scorer.vocabulary
    templates = bench.templates
    config = model.config
    image = load_image(bench.photos[0])
    images = [load_image(p) for p in bench.photos]
    pixels = processor(images=[image], return_tensors="pt").to(r.device)
    texts = [t.format(w) for w in vocab.words for t in templates]
    lengths = [len(ids) for ids in processor.tokenizer(texts).input_ids]
    image_flops = vit_flops(config)
    all_flops = image_flops + sum(text_flops(config, n) for n in lengths)
    bench.results["text_tokens_mean"] = sum(lengths) / len(lengths)
    n_words = len(vocab.words)

    @torch.inference_mode()
    def floor():
        return model.get_image_features(**pixels).pooler_output

    def poemgen_one():
        return scorer.score([image])

    # (a) and (b), interleaved so that drift hits both alike.
    ok_a = bench.guard("(a) `KeywordScorer.score`",
                      lambda: [r.once(poemgen_one) for _ in range(2)]) is not None
    ok_b = bench.guard("(b) `get_image_features`",
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
    prep = bench.guard("preprocessing", lambda: statistics.median(r.times(
        lambda: processor(images=[image], return_tensors="pt"), plan.image_repeats)))
    choose = None
    if ok_b:
        embedding = F.normalize(r.once(floor)[1].float(), dim=-1)
        choose = bench.guard("`keywords_for`", lambda: statistics.median(
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

    c = bench.guard("(c) `encode_vocabulary` + score", uncached)
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

    d = bench.guard("(d) naive loop", naive_extrapolated)
    log(f"naive {d and fmt_s(d)} s per image (extrapolated from {len(naive_words)} words)")

    # A batch of 8 photos.
    batch = bench.guard("a batch of 8 photos", lambda: statistics.median(
        r.times(lambda: scorer.score(images), plan.batch_repeats)))
    bench.results.update(score_a=a, score_b=b, score_c=c, score_d=d,
                        score_batch=batch / 8 if batch else None)

    def row(label, seconds, flops, shown=None):
        if seconds is None:
            return [label, "failed", f"{flops / 1e9:,.1f}", "-", "-", "-"]
        return [label, shown or fmt_s(seconds), f"{flops / 1e9:,.1f}",
                fmt_rate(flops, seconds), bench.of_peak(flops, seconds),
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
        bench.results["cuda_mem_keywords"] = torch.cuda.max_memory_allocated()
    about = (f"One {PHOTO_SIZE[0]}×{PHOTO_SIZE[1]} photo (already decoded) against the full "
             f"default vocabulary: {n_words:,} words × {len(templates)} templates = "
             f"{n_words * len(templates):,} texts (mean {bench.results['text_tokens_mean']:.1f} "
             f"tokens with [CLS] and [SEP]). {r.precision}{' autocast' if r.cuda else ''}, "
             f"median of {plan.image_repeats} runs for (a) and (b) (interleaved), one run for "
             "(c) and (d). GFLOP/s uses the analytic FLOPs below; (c) and (d) count the text "
             "tower's FLOPs without padding. The naive loop encodes the image once, as the "
             "simplest tutorials' loop over labels does, and then each keyword's texts one "
             f"at a time. Image processor: `{type(processor.image_processor).__name__}`.")
    return Section("Keyword scoring: one photo against the whole vocabulary", about,
                   table + "\n\n" + parts + "\n\n" + " ".join(verdict))
