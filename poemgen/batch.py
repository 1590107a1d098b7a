"""Many photos in, one JSON line per photo out: `poemgen DIR --out poems.jsonl`.

A run over a folder can take hours, so the output file is the only state: each photo's line is
appended (and flushed) as soon as its batch is written, and a new run skips every photo whose
path and content hash are already there. A killed run therefore resumes without redoing or
losing work; a line cut short by the kill is dropped and its photo written again. Photos that
cannot be read become error lines, so they are not retried until they change.

Under `accelerate launch` each process takes its share of the photos (accelerate's
`split_between_processes`) and appends to the same file under a lock.
"""

from __future__ import annotations

import fcntl
import glob
import hashlib
import json
import os
import stat
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch

from poemgen.errors import PoemgenError
from poemgen.images import ImageLoadError, in_threads
from poemgen.keywords import Keyword
from poemgen.options import PoemOptions
from poemgen.pipeline import Pipeline, Poem

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"})
MAX_PHOTO_BYTES = 512 * 2**20  # a photo file is read whole (to hash it); no camera comes near


def find_images(inputs: list[str]) -> list[str]:
    """Image paths from files, folders (searched recursively) and glob patterns, in order, each
    once. A file named directly is kept whatever its suffix (it may fail to load later); folders
    and patterns give only files with an image suffix."""
    found: list[str] = []
    for item in inputs:
        if os.path.isdir(item):
            for root, dirs, files in os.walk(item):
                dirs.sort()
                found += [os.path.join(root, f) for f in sorted(files) if _is_image_name(f)]
        elif os.path.exists(item) or not glob.has_magic(item):
            found.append(item)  # a missing file becomes an error line naming it
        else:
            matches = sorted(p for p in glob.glob(item, recursive=True)
                             if os.path.isfile(p) and _is_image_name(p))
            if not matches:
                raise PoemgenError(f"no images match {item}; check the pattern (quote it so "
                                   "the shell leaves it to poemgen)")
            found += matches
    return list(dict.fromkeys(found))


def _is_image_name(name: str) -> bool:
    return Path(name).suffix.lower() in IMAGE_SUFFIXES and not Path(name).name.startswith(".")


@dataclass
class Outcome:
    """What became of one photo: a poem, or the one-line reason it could not be used."""

    image: str
    sha256: str | None
    poem: Poem | None = None
    error: str | None = None

    def to_dict(self) -> dict:
        """The `--json` object (or an error object) with the photo's content hash."""
        if self.poem is None:
            return {"image": self.image, "sha256": self.sha256, "error": self.error}
        return {**self.poem.to_dict(image=self.image), "sha256": self.sha256}


def write_all(pipeline: Pipeline, paths: list[str], options: PoemOptions,
              keywords: list[str] | None = None, batch_size: int = 8) -> Iterator[Outcome]:
    """Outcomes for `paths`, a batch at a time (CLIP and the poet each run once per batch).

    Given `keywords` replace CLIP's; without a poet the outcomes hold keywords only.
    """
    for start in range(0, len(paths), batch_size):
        readable, images, failed = [], [], []
        for outcome, image in in_threads(lambda path: _read(pipeline, path),
                                         paths[start:start + batch_size]):
            if image is None:
                failed.append(outcome)
            else:
                readable.append(outcome)
                images.append(image)
        yield from failed
        if images:
            yield from write_outcomes(pipeline, readable, images, options, keywords)


def read_photo(path: str) -> bytes:
    """The bytes of a photo file. What is not a regular file is refused unread (a FIFO would
    wait for a writer forever, a device such as /dev/zero never ends), and so is a file larger
    than MAX_PHOTO_BYTES."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise ImageLoadError(f"{path}: is not a regular file (a device, FIFO or socket); "
                                 "give a photo file")
        # non-blocking: a FIFO put in its place since the check is read as empty, not waited on
        with open(os.open(path, os.O_RDONLY | os.O_NONBLOCK), "rb") as file:
            data = file.read(MAX_PHOTO_BYTES + 1)
    except FileNotFoundError:
        raise ImageLoadError(f"{path}: no such file; check the path") from None
    except PermissionError:
        raise ImageLoadError(f"{path}: cannot be read (permission denied); fix its permissions") \
            from None
    except OSError as error:
        raise ImageLoadError(f"{path}: cannot be read ({error.strerror}); check the file") \
            from None
    if len(data) > MAX_PHOTO_BYTES:
        raise ImageLoadError(f"{path}: is larger than {MAX_PHOTO_BYTES // 2**20} MiB; give a "
                             "photo file (a JPEG, PNG …) of a usual size")
    if not data:
        raise ImageLoadError(f"{path}: is empty; pass a non-empty image file")
    return data


def _read(pipeline: Pipeline, path: str) -> tuple[Outcome, object]:
    """A photo read, hashed and decoded (in a worker thread), or its error outcome."""
    try:
        data = read_photo(path)
    except ImageLoadError as e:
        return Outcome(path, None, error=str(e)), None
    outcome = Outcome(path, hashlib.sha256(data).hexdigest())
    return outcome, decode(pipeline, outcome, data, path)


def decode(pipeline: Pipeline, outcome: Outcome, source, name: str):
    """`source` (bytes or an image) decoded for CLIP, or None with `outcome.error` set: one
    bad photo is one error, whatever the decoder raises."""
    try:
        return pipeline.load_photo(source, name=name)
    except ImageLoadError as e:
        outcome.error = str(e)
    except Exception as error:  # noqa: BLE001 - a decoder's bug on one photo stops no batch
        _failed(outcome, "could not be decoded", error,
                "; re-export it (and report the error to poemgen)")
    return None


def _failed(outcome: Outcome, what: str, error: Exception, advice: str = "") -> Outcome:
    """`outcome` with the one-line reason of an unexpected failure: what failed, the error
    (its type and the start of its message) and what to do."""
    kind = type(error).__name__
    if type(error).__module__ != "builtins":
        kind = f"{type(error).__module__}.{kind}"
    reason = " ".join(str(error).split())[:200]
    outcome.error = f"{outcome.image}: {what} ({kind}: {reason}){advice}"
    return outcome


def write_outcomes(pipeline: Pipeline, outcomes: list[Outcome], images: list,
                   options: PoemOptions, keywords: list[str] | None) -> Iterator[Outcome]:
    """`outcomes` with their poems. A batch that fails in the models (out of memory, a model
    error) is written again in halves, down to one photo; a photo that fails alone gets an
    error line with the reason, and the run goes on. A user's error (PoemgenError) still stops
    it: it would fail every photo."""
    try:
        poems = poems_for(pipeline, images, options, keywords)
    except PoemgenError:
        raise
    except Exception as error:  # noqa: BLE001 - whatever the models raise, retried smaller
        if len(images) == 1:
            yield _failed(outcomes[0], "the models failed on this photo", error)
            return
        if torch.cuda.is_available():
            torch.cuda.empty_cache()  # an out-of-memory batch leaves its blocks cached
        half = len(images) // 2
        yield from write_outcomes(pipeline, outcomes[:half], images[:half], options, keywords)
        yield from write_outcomes(pipeline, outcomes[half:], images[half:], options, keywords)
        return
    for outcome, poem in zip(outcomes, poems):
        outcome.poem = poem
        yield outcome


def poems_for(pipeline: Pipeline, images: list, options: PoemOptions,
              keywords: list[str] | None = None) -> list[Poem]:
    """Poems for loaded images; keywords only when the pipeline has no poet."""
    embeddings = pipeline.scorer.embed_images(images)
    found = ([[Keyword(w, None) for w in keywords]] * len(images) if keywords
             else pipeline.scorer.keywords_for(embeddings, options.topk, options.selection))
    if pipeline.poet is None:
        return [Poem([], words) for words in found]
    return pipeline.write_from_keywords(found, options, embeddings)


STDOUT = "-"


class JsonlOutput:
    """An append-only JSON-lines file shared by every process of a run. Standard output (`-`),
    a device or a pipe is a stream: written, never read back, so nothing resumes from it.
    Checked before any work: it must be writable."""

    def __init__(self, path: str | os.PathLike):
        self.to_stdout = str(path) == STDOUT
        self.path = Path(path)
        self.stream = None
        if self.to_stdout:
            self.stream = sys.stdout.buffer
            return
        if self.path.is_dir():
            raise PoemgenError(f"--out {self.path} is a folder; give a file such as poems.jsonl")
        if not self.path.parent.is_dir():
            raise PoemgenError(f"--out {self.path}: the folder {self.path.parent} does not "
                               "exist; create it first")
        existed = self.path.exists()
        try:
            file = open(self.path, "ab")
        except OSError as error:
            raise PoemgenError(f"--out {self.path} cannot be written ({error.strerror}); "
                               "choose a file in a folder you can write to") from None
        if existed and not self.path.is_file():
            self.stream = file
            return
        file.close()
        if not existed:
            self.path.unlink()
            return
        self._cut_short_lines()  # a file that is not poemgen's output is refused here

    def _cut_short_lines(self) -> int:
        """How many lines a killed run cut short (the beginning of a line `append` writes).
        Any other line that is not a whole record means the file is not poemgen's output: it
        is refused, and nothing in it is changed."""
        count = 0
        try:
            with open(self.path, "rb") as file:
                for number, line in enumerate(_lines(file), 1):
                    if not line.strip() or _record(line) is not None:
                        continue
                    if _cut_short(line):
                        count += 1
                        continue
                    raise PoemgenError(
                        f"--out {self.path}: line {number} is not a line poemgen writes, so the "
                        "file is not the output of a `poemgen --out` run; nothing in it was "
                        "changed: give a new file, or one that `poemgen --out` wrote")
        except OSError as error:
            raise PoemgenError(f"--out {self.path} cannot be read ({error.strerror}); choose "
                               "a file you can read and write") from None
        return count

    def repair(self) -> int:
        """Drop the lines a killed run cut short; returns how many. Only poemgen's own lines
        are ever dropped (another file is refused), and the file is replaced atomically."""
        if self.stream is not None or not self.path.exists():
            return 0
        dropped = self._cut_short_lines()
        if dropped:
            partial = self.path.with_name(self.path.name + ".partial")
            with open(self.path, "rb") as file, open(partial, "wb") as kept:
                for line in _lines(file):
                    if _record(line) is not None:
                        kept.write(line.rstrip(b"\n") + b"\n")
            os.replace(partial, self.path)
        return dropped

    def done(self) -> dict[str, set[str | None]]:
        """The content hashes already written for each image path."""
        written: dict[str, set[str | None]] = {}
        if self.stream is None and self.path.exists():
            with open(self.path, "rb") as file:
                for line in _lines(file):
                    record = _record(line)
                    if record is not None:
                        written.setdefault(record["image"], set()).add(record.get("sha256"))
        return written

    def append(self, record: dict) -> None:
        """Append one line, whole, under an exclusive lock, and flush it to the file. A write
        that fails (a full disk) is a PoemgenError: the lines before it are kept, and a line
        cut short is dropped when the run is resumed."""
        record = {"image": record["image"], **record}  # first, as _cut_short expects
        text = json.dumps(record, ensure_ascii=False) + "\n"
        line = text.encode("utf-8", "backslashreplace")  # a name not UTF-8: see cli.emit
        try:
            if self.stream is not None:
                self.stream.write(line)
                self.stream.flush()
                return
            with open(self.path, "ab") as file:
                fcntl.flock(file, fcntl.LOCK_EX)
                try:
                    file.seek(0, os.SEEK_END)
                    if file.tell() and _last_byte(self.path) != b"\n":
                        line = b"\n" + line  # another process died mid-line: never join them
                    file.write(line)
                    file.flush()
                    os.fsync(file.fileno())
                finally:
                    fcntl.flock(file, fcntl.LOCK_UN)
        except BrokenPipeError:
            raise  # `--out -` into a reader that went away: the CLI stops quietly
        except OSError as error:
            where = "- (standard output)" if self.to_stdout else self.path
            raise PoemgenError(f"--out {where} cannot be written ({error.strerror}); free some "
                               "space or choose another file, then run again to resume") from None


def pending(paths: list[str], written: dict[str, set[str | None]]) -> list[str]:
    """The paths whose current content has no line yet (only written paths are hashed)."""
    todo = []
    for path in paths:
        hashes = written.get(path)
        if not hashes or _content_hash(path) not in hashes:
            todo.append(path)
    return todo


def _content_hash(path: str) -> str | None:
    try:
        return hashlib.sha256(read_photo(path)).hexdigest()
    except ImageLoadError:
        return None  # unreadable: matches an earlier error line, which has no hash


# Every line `append` writes begins so; a line a kill cut short is a beginning of one.
_LINE_START = b'{"image": '
MAX_LINE_BYTES = 2**20  # far longer than any line poemgen writes


def _lines(file) -> Iterator[bytes]:
    """The lines of a binary file, read MAX_LINE_BYTES at most at a time (a longer line comes
    in pieces, none of which is a record), so a file with no line breaks cannot fill memory."""
    return iter(lambda: file.readline(MAX_LINE_BYTES + 1), b"")


def _record(line: bytes) -> dict | None:
    """The object of a whole line poemgen wrote (every one has an image and a sha256)."""
    try:
        record = json.loads(line)
    except ValueError:
        return None
    if isinstance(record, dict) and isinstance(record.get("image"), str) and "sha256" in record:
        return record
    return None


def _cut_short(line: bytes) -> bool:
    """Whether `line` is the beginning of a record that a kill cut short: not JSON, and
    begun as every line poemgen writes is."""
    line = line.rstrip(b"\n")
    if not (line.startswith(_LINE_START) or _LINE_START.startswith(line)):
        return False
    try:
        json.loads(line)
    except ValueError:
        return True
    return False  # whole JSON, yet not a record: another tool's line


def _last_byte(path: Path) -> bytes:
    with open(path, "rb") as file:
        file.seek(-1, os.SEEK_END)
        return file.read(1)
