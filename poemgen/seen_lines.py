"""Lines a poet read in training, so that its line search can pass over them.

A small poet learns some famous lines by heart, and line search, which keeps the likeliest of
several candidate lines, finds exactly those: a written poem would then quote 李白 without
saying so. The set of a corpus's 1.3 million lines does not fit beside a 16 MB poet, so it is
kept as a Bloom filter (1 % false positives at 10 bits a line: about 1.6 MB). A false positive
only makes the search prefer another candidate; a copied line is never missed.

File format (`seen_lines.bloom` in a poet's folder): the magic `MAGIC`, then the number of bits
and of hashes as little-endian 64- and 32-bit integers, then the bits.
"""

from __future__ import annotations

import hashlib
import math
import os
import struct
from collections.abc import Iterable
from pathlib import Path

FILENAME = "seen_lines.bloom"
MAGIC = b"poemgen-seen-lines-1\n"
HEADER = struct.Struct("<QI")


class SeenLines:
    """A Bloom filter of lines: `line in seen` is True for every line added, and for about
    `false_positives` of the others."""

    def __init__(self, bits: int, hashes: int, data: bytearray | None = None):
        if bits < 8 or not 1 <= hashes <= 32:
            raise ValueError(f"a Bloom filter needs at least 8 bits and 1-32 hashes, got "
                             f"{bits} bits and {hashes} hashes")
        self.bits, self.hashes = bits, hashes
        self.data = data if data is not None else bytearray((bits + 7) // 8)
        if len(self.data) != (bits + 7) // 8:
            raise ValueError(f"{len(self.data)} bytes do not hold {bits} bits")

    @classmethod
    def sized(cls, count: int, false_positives: float = 0.01) -> "SeenLines":
        """An empty filter for `count` lines at the given false-positive rate (the textbook
        optimum: m = -n ln p / ln² 2 bits and k = m/n ln 2 hashes)."""
        bits = max(8, math.ceil(-count * math.log(false_positives) / math.log(2) ** 2))
        return cls(bits, max(1, round(bits / max(count, 1) * math.log(2))))

    @classmethod
    def of(cls, lines: Iterable[str], false_positives: float = 0.01) -> "SeenLines":
        unique = set(lines)
        seen = cls.sized(len(unique), false_positives)
        for line in unique:
            seen.add(line)
        return seen

    def _positions(self, line: str) -> list[int]:
        """k positions by double hashing (Kirsch and Mitzenmacher): two 64-bit halves of one
        BLAKE2b digest, stable across runs and machines, unlike Python's `hash`."""
        digest = hashlib.blake2b(line.encode("utf-8", "surrogatepass"), digest_size=16).digest()
        first, second = int.from_bytes(digest[:8], "little"), int.from_bytes(digest[8:], "little")
        return [(first + i * second) % self.bits for i in range(self.hashes)]

    def add(self, line: str) -> None:
        for position in self._positions(line):
            self.data[position >> 3] |= 1 << (position & 7)

    def __contains__(self, line: str) -> bool:
        return all(self.data[p >> 3] >> (p & 7) & 1 for p in self._positions(line))

    def save(self, path: str | os.PathLike) -> None:
        Path(path).write_bytes(MAGIC + HEADER.pack(self.bits, self.hashes) + bytes(self.data))

    @classmethod
    def load(cls, path: str | os.PathLike) -> "SeenLines":
        raw = Path(path).read_bytes()
        if not raw.startswith(MAGIC) or len(raw) < len(MAGIC) + HEADER.size:
            raise ValueError(f"{path} is not a poemgen seen-lines file")
        bits, hashes = HEADER.unpack_from(raw, len(MAGIC))
        return cls(bits, hashes, bytearray(raw[len(MAGIC) + HEADER.size:]))
