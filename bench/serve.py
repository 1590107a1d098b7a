"""What the server's request batching buys: requests/s and latency under concurrent clients.

    python bench/serve.py                        # this machine's CPU, about 5 minutes
    python bench/serve.py --quick                # 1 and 8 clients, fewer requests: about 2
    python bench/serve.py --device cuda          # the poet cast to bf16 (CLIP stays fp32)
    python bench/serve.py --no-photos --clients 16 --poet mini   # seeds batched: 16 at once

The app of `poemgen serve` (`poemgen.serve.create_app`) runs in this process and is called
through `httpx.ASGITransport`: no sockets and no uvicorn, so what is timed is the server's own
work (reading the upload, decoding the photo, the queue, the models, the JSON answer), not the
network's. The models are bench/run.py's: Chinese-CLIP ViT-B/16 and Mengzi-T5-base shapes with
random weights, built from configs and loaded with `poemgen.pipeline.load`, the server's own
loading code (the vocabulary's text embeddings are encoded once at load, about 50 s on a
2-core CPU); `--poet mini` writes with the shipped poet instead of the base-size one.

Each row is N clients, each sending its requests back to back (the next as soon as the last is
answered), against a fresh app twice: with `max_batch=1` (every request written alone) and with
the default `Limits` (`max_batch=16`, `batch_wait_s=0.01`). Rate limit off, default options
(五绝, one candidate). "photo" uploads one of 8 synthetic 640×480 JPEGs (multipart, CLIP and the
poet); "keywords" sends JSON keywords (the poet alone); "keywords, a seed each" sends them with
a different seed per request (each poem samples from its own seed's generator, so they share
batches as unseeded requests do). Latency runs from sending a request to its full answer; the mean batch is the
app's /healthz requests / batches; "others' CPU" is the share of the machine's CPU time other
processes took during the row (above 5 %, distrust the row). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

from common import (KEYWORD_LISTS, CpuWatch, add_model_arguments, build_clip, build_poet, log,
                 machine, make_photo, md_table, runner_for)


# (concurrent clients, requests each) per row. One client cannot gain from batching but shows a
# request's own latency; 32 clients with one request each are a burst that fills two batches.
FULL = ((1, 8), (8, 2), (32, 1))
QUICK = ((1, 3), (8, 1))


def photo_requests(photos: list[bytes]):
    """The i-th request uploads photo i mod 8, so a batch holds different photos."""
    return lambda i: {"files": {"image": (f"photo{i % len(photos)}.jpg",
                                          photos[i % len(photos)], "image/jpeg")}}


def keyword_requests(i: int) -> dict:
    return {"json": {"keywords": ",".join(KEYWORD_LISTS[i % len(KEYWORD_LISTS)])}}


def seeded_keyword_requests(i: int) -> dict:
    return {"json": {**keyword_requests(i)["json"], "seed": 1000 + i}}


async def serve_row(pipeline, limits, clients: int, per_client: int, request) -> dict:
    """A fresh app (so /healthz counts this row alone), `clients` clients each sending
    `per_client` requests back to back; `request(i)` is the i-th request's httpx arguments."""
    import httpx

    from poemgen.serve import create_app

    app = create_app(pipeline, limits)
    latencies = []
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://bench",
                                 timeout=None) as http:
        async def client(number: int) -> None:
            for i in range(per_client):
                start = time.perf_counter()
                response = await http.post("/v1/poems", **request(number * per_client + i))
                if response.status_code != 200:
                    raise RuntimeError(f"HTTP {response.status_code}: {response.text}")
                latencies.append(time.perf_counter() - start)

        start = time.perf_counter()
        await asyncio.gather(*(client(number) for number in range(clients)))
        wall = time.perf_counter() - start
        health = (await http.get("/healthz")).json()
    app.state.batcher.close()
    return {"per_s": len(latencies) / wall, "p50": statistics.median(latencies),
            "p95": statistics.quantiles(latencies, n=20, method="inclusive")[18],
            "batch": health["requests"] / health["batches"], "requests": len(latencies)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="1 and 8 clients, fewer requests")
    add_model_arguments(p)
    p.add_argument("--no-keywords", action="store_true", help="photo rows only")
    p.add_argument("--no-photos", action="store_true", help="keyword rows only")
    p.add_argument("--clients", type=int, nargs="+", metavar="N",
                   help="rows of N clients with one request each, instead of the plan")
    p.add_argument("--poet", metavar="MODEL",
                   help="load this poet (e.g. mini, the shipped one) instead of building the "
                        "base-size one")
    args = p.parse_args()
    runner = runner_for(p, args)

    import torch

    from poemgen.pipeline import load
    from poemgen.serve import Limits

    plan = QUICK if args.quick else FULL
    if args.clients:
        plan = tuple((n, 1) for n in args.clients)
    print("\n".join([f"- command: `{shlex.join(['python', 'bench/serve.py', *sys.argv[1:]])}`",
                     *[f"- {line}" for line in machine(runner)]]), flush=True)
    default = Limits(requests_per_minute=0)
    servers = {"1 (no batching)": Limits(requests_per_minute=0, max_batch=1),
               f"{default.max_batch} (default)": default}

    with tempfile.TemporaryDirectory(prefix="poemgen-bench-") as tmp_name:
        tmp = Path(tmp_name)
        os.environ["POEMGEN_HOME"] = str(tmp / "home")  # the embedding cache, thrown away
        log("building Chinese-CLIP ViT-B/16 and Mengzi-T5-base shapes with random weights")
        build_clip(tmp / "clip")
        if not args.poet:
            build_poet(tmp / "poet", args.data)
        pipeline = load(str(tmp / "clip"), args.poet or str(tmp / "poet"), args.device)
        if runner.cuda:
            pipeline.poet.model.to(torch.bfloat16)
        log("models loaded")
        photos = [make_photo(tmp / f"photo{i}.jpg", seed=i).read_bytes() for i in range(8)]
        kinds = {}
        if not args.no_photos:
            kinds[f"photo ({statistics.mean(map(len, photos)) / 1024:.0f} KB JPEG)"] = \
                photo_requests(photos)
        if not args.no_keywords:
            kinds["keywords (JSON)"] = keyword_requests
            kinds["keywords, a seed each (JSON)"] = seeded_keyword_requests

        rows = []
        for kind, request in kinds.items():
            # Warm-up, not reported: the first calls' one-time costs (a batch of up to 2).
            asyncio.run(serve_row(pipeline, default, 2, 1, request))
            for clients, per_client in plan:
                unbatched = None
                for label, limits in servers.items():
                    watch = CpuWatch()
                    row = asyncio.run(serve_row(pipeline, limits, clients, per_client, request))
                    others = watch.others()
                    unbatched = unbatched or row["per_s"]
                    log(f"{kind}, {clients} client(s), max_batch {label}: "
                        f"{row['per_s']:.2f} requests/s, mean batch {row['batch']:.1f}")
                    rows.append([kind, clients, row["requests"], label, f"{row['per_s']:.2f}",
                                 f"{row['p50']:.2f}", f"{row['p95']:.2f}", f"{row['batch']:.1f}",
                                 f"{row['per_s'] / unbatched:.2f}×",
                                 "?" if others is None else f"{others[1]:.0%}"])
    print()
    print(md_table(["request", "clients", "requests", "max_batch", "requests/s", "p50 (s)",
                    "p95 (s)", "mean batch", "vs no batching", "others' CPU"], rows))
    print(f"\n{torch.get_num_threads()} torch threads on `{args.device}`; latency from "
          "sending a request to its answer")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
