"""The server's memory under bursts of small-but-huge uploads: 20 of one file at once.

    python bench/upload_memory.py                    # this checkout's server, about 15 minutes
    python bench/upload_memory.py --baseline DIR     # also a server run from another checkout
    python bench/upload_memory.py --uploads rgb gif  # only these uploads

Each upload is a few bytes to a few hundred KB, passes the upload limit (10 MB) and the pixel
limit (40 M), and yet asks for much more memory: a 6300×6300 RGB PNG of smooth colour (about
100 KB) decodes to 151 MiB; a 100-byte 5000×1 PNG made CLIP's processor build a 1,120,000×224
image; a 43-byte GIF declares a 6300×6300 screen around one 1×1 frame; a palette PNG with
transparency and a 16-bit grey PNG used to be converted at full size (RGBA, float64) before
they were reduced. Each row starts `poemgen serve` in a fresh process (Chinese-CLIP ViT-B/16
shapes with random weights, built from a config, and the shipped poet), answers one ordinary
photo to warm it, measures its resident memory idle, then sends the 20 uploads at once and
samples `/proc/PID/status` every 10 ms until all are answered. "peak above idle" is the row's
number; "after" is the resident size 2 s after the burst (memory the allocator keeps). With
`--baseline DIR`, each upload also runs on the server of the checkout in DIR (for example
`git archive COMMIT | tar -x -C DIR`), the same way. The first row also computes CLIP's
vocabulary embeddings (10 minutes or more on 2 cores). Linux only. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import mimetypes
import shlex
import struct
import sys
import tempfile
import threading
import time
from pathlib import Path

from common import build_clip, poemgen_server, log, make_photo, md_table

UPLOADS = 20
SIDE = 6300
REPO = Path(__file__).resolve().parent.parent


def _png(pixels, **params) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    (pixels if isinstance(pixels, Image.Image) else Image.fromarray(pixels)).save(
        buffer, "PNG", optimize=True, **params)
    return buffer.getvalue()


def rgb_png() -> bytes:
    """A 6300×6300 RGB PNG of smooth gradients: about 100 KB on disk, 151 MiB decoded."""
    import numpy as np

    ramp = np.linspace(0, 255, SIDE, dtype=np.float32)
    return _png(np.stack([np.broadcast_to(ramp, (SIDE, SIDE)),
                          np.broadcast_to(ramp[:, None], (SIDE, SIDE)),
                          np.full((SIDE, SIDE), 90, np.float32)], axis=-1).astype(np.uint8))


def thin_png() -> bytes:
    """A 100-byte 5000×1 PNG: 5,000 pixels, which CLIP's processor would make 1,120,000×224."""
    from PIL import Image

    return _png(Image.new("RGB", (5000, 1), (40, 90, 160)))


def screen_gif() -> bytes:
    """A 43-byte GIF: a 6300×6300 screen (38 MiB of palette indices) around a transparent
    1×1 frame."""
    return (b"GIF89a" + struct.pack("<HHBBB", SIDE, SIDE, 0x80, 0, 0) + b"\0\0\0\xff\xff\xff"
            + b"!\xf9\x04\x01\0\0\0\0" + b"," + struct.pack("<HHHHB", 0, 0, 1, 1, 0)
            + b"\x02\x02\x44\x01\x00;")


def palette_png() -> bytes:
    """A 6300×6300 palette PNG with a transparent colour, each row one colour: about 40 KB."""
    import numpy as np
    from PIL import Image

    rows = (np.arange(SIDE) * 256 // SIDE).astype(np.uint8)
    image = Image.fromarray(np.broadcast_to(rows[:, None], (SIDE, SIDE)).copy(), "L").convert("P")
    image.putpalette([value for i in range(256) for value in (i, 255 - i, 90)])
    return _png(image, transparency=0)


def grey16_png() -> bytes:
    """A 6300×6300 16-bit grey PNG of a smooth ramp: about 90 KB."""
    import numpy as np

    ramp = (np.arange(SIDE, dtype=np.uint32) * 65535 // SIDE).astype(np.uint16)
    return _png(np.broadcast_to(ramp, (SIDE, SIDE)).copy())


# name → (label, file maker, file name)
UPLOAD_KINDS = {
    "rgb": ("6300×6300 RGB PNG", rgb_png, "huge.png"),
    "thin": ("5000×1 PNG", thin_png, "thin.png"),
    "gif": ("GIF, 6300×6300 screen, 1×1 frame", screen_gif, "screen.gif"),
    "palette": ("6300×6300 palette PNG with transparency", palette_png, "palette.png"),
    "grey16": ("6300×6300 16-bit grey PNG", grey16_png, "grey16.png"),
}


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


async def burst(url: str, data: bytes, filename: str) -> list[tuple[int, float]]:
    """`UPLOADS` uploads at once; each answer's status and seconds."""
    import httpx

    async def one(client, i: int) -> tuple[int, float]:
        start = time.perf_counter()
        response = await client.post(url, files={"image": (f"{i}-{filename}", data,
                                                           mimetypes.guess_type(filename)[0])})
        return response.status_code, time.perf_counter() - start

    async with httpx.AsyncClient(timeout=600) as client:
        return await asyncio.gather(*(one(client, i) for i in range(UPLOADS)))


def run_row(source: Path, clip: Path, home: Path, data: bytes, filename: str,
            photo: bytes) -> dict:
    import httpx

    with poemgen_server(source, clip, home) as (server, base):
        warm = httpx.post(f"{base}/v1/poems", files={"image": ("photo.jpg", photo, "image/jpeg")},
                          timeout=600)
        assert warm.status_code == 200, warm.text
        time.sleep(1)
        idle = resident_bytes(server.pid)
        watch = PeakWatch(server.pid)
        start = time.perf_counter()
        answers = asyncio.run(burst(f"{base}/v1/poems", data, filename))
        seconds = time.perf_counter() - start
        peak = watch.stop()
        time.sleep(2)
        after = resident_bytes(server.pid)
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
    p.add_argument("--uploads", nargs="+", choices=list(UPLOAD_KINDS), default=list(UPLOAD_KINDS),
                   help="which uploads to send (default: all)")
    args = p.parse_args()
    if not Path("/proc/self/status").is_file():
        p.error("this benchmark reads /proc: Linux only")
    servers = [("now", REPO)]
    if args.baseline:
        servers.insert(0, (f"baseline ({args.baseline.name})", args.baseline.resolve()))
    print(f"- command: `{shlex.join(['python', 'bench/upload_memory.py', *sys.argv[1:]])}`")
    print(f"- {UPLOADS} concurrent uploads of one file per row; default server limits")
    rows = []
    with tempfile.TemporaryDirectory(prefix="poemgen-bench-") as tmp_name:
        tmp = Path(tmp_name)
        log("building Chinese-CLIP ViT-B/16 shapes with random weights")
        build_clip(tmp / "clip")
        photo = make_photo(tmp / "photo.jpg", seed=0).read_bytes()
        for kind in args.uploads:
            label, make, filename = UPLOAD_KINDS[kind]
            data = make()
            for server, source in servers:
                log(f"row: {label}, {server}")
                row = run_row(source, tmp / "clip", tmp / "home", data, filename, photo)
                codes = ", ".join(f"{n}× {status}" for status, n in sorted(row["codes"].items()))
                log(f"{label}, {server}: peak {mib(row['peak'] - row['idle'])} above idle; {codes}")
                rows.append([label, f"{len(data):,} B", server, mib(row["idle"]), mib(row["peak"]),
                             f"**{mib(row['peak'] - row['idle'])}**", mib(row["after"]), codes,
                             f"{row['seconds']:.1f}"])
    print()
    print(md_table(["upload", "file", "server", "idle", "peak", "peak above idle", "2 s after",
                    "answers", "burst (s)"], rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
