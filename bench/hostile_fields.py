"""How long other clients wait while the server refuses one huge form field (issue 24, item 5).

    python bench/hostile_fields.py                    # this checkout's server, about 3 minutes
    python bench/hostile_fields.py --baseline DIR     # also the server of the checkout in DIR

Each row starts `poemgen serve` in a fresh process (Chinese-CLIP ViT-B/16 shapes with random
weights, built from a config, and the shipped poet; real uvicorn, real sockets), then for each
hostile request sends it while a second client asks `GET /healthz` back to back, and reports
the slowest and the median /healthz answer while the hostile request was in flight, what the
hostile request got (status, seconds, size of the answer), and /healthz idle for comparison;
each hostile request is sent `--repeat` times (default 5), the slowest /healthz over all and
the median of the hostile request's time kept (this machine is shared: one slow probe can be
another process's doing).
The target is a /healthz within 50 ms however large the field. With `--baseline DIR`, the
same rows for the server of the checkout in DIR (for example `git worktree add DIR <commit>`).
Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode

from common import build_clip, poemgen_server, log, md_table

REPO = Path(__file__).resolve().parent.parent
FIELD_BYTES = int(9.9 * 2**20)  # just under the 10 MB upload limit


def hostile_requests() -> dict[str, dict]:
    """httpx arguments of each hostile request: about 9.9 MB of one field (3 MB of `given`;
    and just under the 1 MB that starlette's form parser allowed a multipart field)."""
    words = "明月，" * (FIELD_BYTES // len("明月，".encode()))
    categories = "山水，" * (FIELD_BYTES // len("山水，".encode()))
    return {
        "JSON keywords, 9.9 MB": {"content": json.dumps({"keywords": words}, ensure_ascii=False)
                                  .encode(), "headers": {"content-type": "application/json"}},
        "form keywords, 9.9 MB": {"files": {"keywords": (None, words.encode())}},
        "form categories, 9.9 MB": {"files": {"keywords": (None, "明月".encode()),
                                              "categories": (None, categories.encode())}},
        "form keywords, 0.99 MB": {"files": {"keywords": (None, words.encode()[:2**20 - 4096]
                                                          .decode(errors="ignore"))}},
        "urlencoded keywords, 9.9 MB encoded": {  # encoded here, not in the timed loop
            "content": urlencode({"keywords": words[:len(words) // 3]}).encode(),
            "headers": {"content-type": "application/x-www-form-urlencoded"}},
        "JSON given line, 3 MB": {"content": json.dumps({"keywords": "明月", "given": "明" * 2**20},
                                                        ensure_ascii=False).encode(),
                                  "headers": {"content-type": "application/json"}},
    }


async def while_refused(base: str, request: dict | None) -> dict:
    """/healthz back to back while `request` is in flight (or for 2 s with none)."""
    import httpx

    async with httpx.AsyncClient(timeout=120) as hostile, httpx.AsyncClient(timeout=120) as probe:
        waits = []
        task = None
        if request is not None:
            task = asyncio.create_task(hostile.post(f"{base}/v1/poems", **request))
        started = time.perf_counter()
        while (task is not None and not task.done()) or \
                (task is None and time.perf_counter() - started < 2):
            start = time.perf_counter()
            assert (await probe.get(f"{base}/healthz")).status_code == 200
            waits.append(time.perf_counter() - start)
        answer = await task if task is not None else None
    return {"waits": waits, "status": answer.status_code if answer else "—",
            "seconds": time.perf_counter() - started,
            "bytes": len(answer.content) if answer else 0}


def repeated(base: str, request: dict | None, times: int) -> dict:
    runs = [asyncio.run(while_refused(base, request)) for _ in range(times)]
    waits = [wait for run in runs for wait in run["waits"]]
    return {"max": max(waits), "median": statistics.median(waits), "probes": len(waits),
            "status": "/".join(sorted({str(run["status"]) for run in runs})),
            "seconds": statistics.median(run["seconds"] for run in runs),
            "bytes": max(run["bytes"] for run in runs)}


def run_server(source: Path, clip: Path, home: Path, requests: dict[str, dict],
               times: int) -> list[dict]:
    with poemgen_server(source, clip, home) as (_, base):
        rows = [{"request": "none (idle)", **repeated(base, None, 1)}]
        for name, request in requests.items():
            rows.append({"request": name, **repeated(base, request, times)})
            log(f"{name}: /healthz at most {rows[-1]['max'] * 1000:.0f} ms")
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--baseline", type=Path, metavar="DIR",
                   help="also measure the server of the poemgen checkout in DIR")
    p.add_argument("--repeat", type=int, default=5, metavar="N",
                   help="send each hostile request N times (default 5)")
    args = p.parse_args()
    servers = [(f"this checkout ({REPO.name})", REPO)]
    if args.baseline:
        servers.insert(0, (f"baseline ({args.baseline})", args.baseline.resolve()))
    print(f"- command: `{shlex.join(['python', 'bench/hostile_fields.py', *sys.argv[1:]])}`")
    print(f"- {os.cpu_count()} CPUs; one hostile client and one /healthz client at a time",
          flush=True)
    requests = hostile_requests()
    table = []
    with tempfile.TemporaryDirectory(prefix="poemgen-bench-") as tmp_name:
        tmp = Path(tmp_name)
        log("building Chinese-CLIP ViT-B/16 shapes with random weights")
        build_clip(tmp / "clip")
        for label, source in servers:
            log(f"server: {label}")
            for row in run_server(source, tmp / "clip", tmp / "home", requests, args.repeat):
                table.append([label, row["request"], f"{row['max'] * 1000:.0f}",
                              f"{row['median'] * 1000:.1f}", row["probes"], row["status"],
                              f"{row['seconds']:.2f}", f"{row['bytes']:,}"])
    print()
    print(md_table(["server", "hostile request", "/healthz max (ms)", "/healthz median (ms)",
                    "probes", "answer", "answered in (s), median", "answer size (bytes)"],
                   table))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
