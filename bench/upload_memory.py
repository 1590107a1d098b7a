"""The server's memory under a burst of huge-but-small uploads: 20 PNGs of 6300×6300 at once.

    python bench/upload_memory.py                    # this checkout's server, about 3 minutes
    python bench/upload_memory.py --baseline DIR     # also a server run from another checkout

A PNG of smooth colour compresses a 40-megapixel photo into about 100 KB, so it passes the
upload limit (10 MB) and the pixel limit (40 M) and yet decodes to 119 MB. Each row starts
`poemgen serve` in a fresh process (Chinese-CLIP ViT-B/16 shapes with random weights, built
from a config, and the shipped poet), answers one ordinary photo to warm it, measures its
resident memory idle, then sends the 20 uploads at once and samples `/proc/PID/status` every
10 ms until all are answered. "peak above idle" is the row's number; "after" is the resident
size 2 s after the burst (memory the allocator keeps). With `--baseline DIR`, a row runs the
server of the checkout in DIR (for example `git worktree add DIR <commit>`), the same way.
Linux only. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import shlex
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from common import build_clip, log, make_photo, md_table

UPLOADS = 20
SIDE = 6300
REPO = Path(__file__).resolve().parent.parent


def huge_png() -> bytes:
    """A 6300×6300 RGB PNG of smooth gradients: about 100 KB on disk, 119 MB decoded."""
    import numpy as np
    from PIL import Image

    ramp = np.linspace(0, 255, SIDE, dtype=np.float32)
    pixels = np.stack([np.broadcast_to(ramp, (SIDE, SIDE)),
                       np.broadcast_to(ramp[:, None], (SIDE, SIDE)),
                       np.full((SIDE, SIDE), 90, np.float32)], axis=-1).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG", optimize=True)
    return buffer.getvalue()


def resident_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


class PeakWatch:
    """The largest resident size of a process, sampled every 10 ms on a thread."""

    def __init__(self, pid: int):
        self.pid, self.peak, self._stop = pid, 0, threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, resident_bytes(self.pid))
            time.sleep(0.01)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def burst(url: str, png: bytes) -> list[tuple[int, float]]:
    """`UPLOADS` uploads at once; each answer's status and seconds."""
    import httpx

    async def one(client, i: int) -> tuple[int, float]:
        start = time.perf_counter()
        response = await client.post(url, files={"image": (f"huge{i}.png", png, "image/png")})
        return response.status_code, time.perf_counter() - start

    async with httpx.AsyncClient(timeout=600) as client:
        return await asyncio.gather(*(one(client, i) for i in range(UPLOADS)))


def run_row(source: Path, clip: Path, home: Path, png: bytes, photo: bytes,
            extra: list[str]) -> dict:
    import httpx

    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(source), "POEMGEN_HOME": str(home),
           "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "poemgen", "serve", "--clip", str(clip), "--poet", "mini",
               "--device", "cpu", "--port", str(port), "--rate", "0", *extra]
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
        warm = httpx.post(f"{base}/v1/poems", files={"image": ("photo.jpg", photo, "image/jpeg")},
                          timeout=600)
        assert warm.status_code == 200, warm.text
        time.sleep(1)
        idle = resident_bytes(server.pid)
        watch = PeakWatch(server.pid)
        start = time.perf_counter()
        answers = asyncio.run(burst(f"{base}/v1/poems", png))
        seconds = time.perf_counter() - start
        peak = watch.stop()
        time.sleep(2)
        after = resident_bytes(server.pid)
    finally:
        server.terminate()
        server.wait(30)
    codes = {}
    for status, _ in answers:
        codes[status] = codes.get(status, 0) + 1
    return {"idle": idle, "peak": peak, "after": after, "seconds": seconds, "codes": codes}


def mib(size: int) -> str:
    return f"{size / 2**20:,.0f} MiB"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--baseline", type=Path, metavar="DIR",
                   help="also measure the server of the poemgen checkout in DIR")
    args = p.parse_args()
    if not Path("/proc/self/status").is_file():
        p.error("this benchmark reads /proc: Linux only")
    rows_to_run = [(f"this checkout ({REPO.name})", REPO, []),
                   ("this checkout, --decoding-pixels 40000000", REPO,
                    ["--decoding-pixels", "40000000"])]
    if args.baseline:
        rows_to_run.insert(0, (f"baseline ({args.baseline})", args.baseline.resolve(), []))
    print(f"- command: `{shlex.join(['python', 'bench/upload_memory.py', *sys.argv[1:]])}`")
    png = huge_png()
    print(f"- {UPLOADS} concurrent uploads of one {SIDE}×{SIDE} RGB PNG of {len(png) / 1024:.0f} "
          f"KB ({SIDE * SIDE * 3 / 2**20:.0f} MiB decoded)", flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="poemgen-bench-") as tmp_name:
        tmp = Path(tmp_name)
        log("building Chinese-CLIP ViT-B/16 shapes with random weights")
        build_clip(tmp / "clip")
        photo = make_photo(tmp / "photo.jpg", seed=0).read_bytes()
        for label, source, extra in rows_to_run:
            log(f"row: {label}")
            row = run_row(source, tmp / "clip", tmp / "home", png, photo, extra)
            codes = ", ".join(f"{n}× {status}" for status, n in sorted(row["codes"].items()))
            log(f"{label}: peak {mib(row['peak'] - row['idle'])} above idle; {codes}")
            rows.append([label, mib(row["idle"]), mib(row["peak"]),
                         f"**{mib(row['peak'] - row['idle'])}**", mib(row["after"]), codes,
                         f"{row['seconds']:.1f}"])
    print()
    print(md_table(["server", "idle", "peak", "peak above idle", "2 s after", "answers",
                    "burst (s)"], rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
