"""Section 2 of bench/run.py: poem writing with the base-size poet."""

from __future__ import annotations

import statistics

from common import FORMS, KEYWORD_LISTS, RULES, Bench, Section, fmt_rate, fmt_s, log, md_table
from flops import poem_flops


# 2. Poem writing.
def poems(bench: Bench) -> Section:
    torch = bench.r.torch
    from poemgen.images import load_image
    from poemgen.options import PoemOptions
    from poemgen.pipeline import Pipeline

    r, plan, poet = bench.r, bench.plan, bench.poet
    if r.cuda:
        torch.cuda.reset_peak_memory_stats()
    for _, lines, chars in FORMS:  # first-call costs: rule tables per rhyme system
        for label, rules in RULES.items():
            bench.guard(f"warm-up, {label}", lambda: poet.write(
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
                measured = bench.guard(f"{name}, {batch_name}, {label}",
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
                             bench.of_peak(flops, best)])
                log(f"{name} {batch_name} {label}: {best / poems:.3f} s per poem")

    # From photos: CLIP, the poet and the reranking, as `Pipeline.write_batch` runs them.
    pipe = Pipeline(bench.scorer, poet)
    photos = [load_image(p) for p in bench.photos]

    def from_photos():
        r.once(lambda: pipe.write_batch(photos[:1], seed=0))
        return statistics.median(r.times(lambda: pipe.write_batch(photos, seed=0),
                                         plan.poem_repeats, warmup=0))

    seconds = bench.guard("8 photos → 8 poems", from_photos)
    label = ["五绝", "8 photos → 8 poems (`Pipeline.write_batch`)",
             "新韵 loose + no repeats (default)"]
    rows.append(label + ([fmt_s(seconds / 8), f"{8 / seconds:.2f}"] if seconds
                         else ["failed", "-"]) + ["-"] * 5)
    bench.results["pipeline_per_poem"] = seconds / 8 if seconds else None
    if prompt_lengths:
        bench.results["prompt_tokens_mean"] = sum(prompt_lengths) / len(prompt_lengths)
        bench.results["line_tokens_mean"] = sum(token_counts) / len(token_counts)
    table = md_table(["form", "batch", "rules", "s per poem", "poems/s", "ms per token",
                      "rules' cost per token", "GFLOP per poem", "GFLOP/s", "of peak"], rows)

    throughput = ""
    sizes = (8, 32, 64) if r.cuda else plan.throughput
    if sizes:
        trows, rates = [], {}
        options = PoemOptions(seed=0)
        for size in sizes:
            keywords = [KEYWORD_LISTS[i % len(KEYWORD_LISTS)] for i in range(size)]
            seconds = bench.guard(f"throughput, batch {size}", lambda: statistics.median(
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
            bench.results["poems_per_s"] = (best, rates[best])
            for row in trows:
                if row[0] == best:
                    row[3] = "best"
        throughput = ("\n\nPoems per second (五绝, default rules, 1 candidate, one batch of "
                      "keyword lists):\n\n"
                      + md_table(["batch", "s per batch", "poems/s", ""], trows))
    if r.cuda:  # end to end in batch mode, as `poemgen DIR --out` runs: decode, keywords, poem
        throughput += "\n\n" + end_to_end(bench, pipe)
        bench.results["cuda_mem_poems"] = torch.cuda.max_memory_allocated()
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


def end_to_end(bench: Bench, pipe, photos: int = 512, batch: int = 64) -> str:
    """Photos → poems per second through `poemgen.batch.write_all`: JPEG files read and
    decoded in worker threads, CLIP over the batch, the poems, the reranking."""
    from poemgen.batch import write_all
    from poemgen.options import PoemOptions

    r = bench.r
    paths = [str(bench.photos[i % len(bench.photos)]) for i in range(photos)]
    options = PoemOptions(seed=0)

    def run(some: list[str]) -> int:
        return sum(1 for outcome in write_all(pipe, some, options, batch_size=batch)
                   if outcome.poem is not None)

    bench.guard("end to end, warm-up", lambda: run(paths[:batch]))
    measured = bench.guard(f"end to end, {photos} photos", lambda: r.once(lambda: run(paths)))
    if measured is None:
        return "Photos → poems end to end: failed (see the log)."
    seconds, written = measured
    log(f"end to end: {written / seconds:.1f} photos → poems per second")
    return (f"Photos → poems end to end (`poemgen.batch.write_all`, {photos} JPEG files of "
            f"640×480, batches of {batch}, default rules): {written} poems in {fmt_s(seconds)} s, "
            f"**{written / seconds:.1f} photos → poems per second**.")
