import random
import shutil

import pytest

from poemgen.options import PoemOptions
from poemgen.poet import Poet
from poemgen.prosody import check
from poemgen.seen_lines import FILENAME, SeenLines

KEYWORDS = [["明月", "孤舟"], ["青山", "白云"], ["落日"], ["寒梅"]]


def random_lines(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return ["".join(chr(rng.randrange(0x4E00, 0x9FA6)) for _ in range(7)) for _ in range(count)]


def test_every_line_added_is_seen_and_few_others_are(tmp_path):
    lines = random_lines(5000, seed=0)
    seen = SeenLines.of(lines, false_positives=0.01)
    assert all(line in seen for line in lines)
    others = [line for line in random_lines(20000, seed=1) if line not in set(lines)]
    assert sum(line in seen for line in others) / len(others) < 0.02
    seen.save(tmp_path / FILENAME)
    again = SeenLines.load(tmp_path / FILENAME)
    assert (again.bits, again.hashes, again.data) == (seen.bits, seen.hashes, seen.data)


def test_a_filter_is_the_same_on_every_run():
    """The positions come from a fixed digest, not Python's salted `hash`."""
    assert SeenLines.of(["床前明月光"]).data == SeenLines.of(["床前明月光"]).data
    assert SeenLines.of(["床前明月光"]).data != SeenLines.of(["疑是地上霜"]).data


@pytest.mark.parametrize("raw", [b"", b"poemgen-seen-lines-1\n", b"\x00" * 64])
def test_damaged_files_are_refused(tmp_path, raw):
    (tmp_path / FILENAME).write_bytes(raw)
    with pytest.raises(ValueError):
        SeenLines.load(tmp_path / FILENAME)


def test_line_search_passes_over_the_lines_the_poet_read(tiny, tmp_path):
    """The same candidates are drawn with and without the filter (same seeds), so once the lines
    first chosen are marked as read, a different, unread candidate wins each first line, and
    no chosen line is a read one while an unread candidate was there; every rule still holds."""
    options = PoemOptions(seed=2, temperature=1.0, top_p=1.0, line_candidates=8)
    before = [v[0].lines for v in Poet.load(tiny.poet).write(KEYWORDS, options)]
    folder = tmp_path / "poet"
    shutil.copytree(tiny.poet, folder)
    read = [line for poem in before for line in poem]
    SeenLines.of(read).save(folder / FILENAME)
    poet = Poet.load(str(folder))
    after = [v[0].lines for v in poet.write(KEYWORDS, options)]
    for old, new in zip(before, after):
        assert new[0] != old[0] and new[0] not in poet.seen
        assert not set(new) & set(read)
        result = check("，".join(new) + "。", no_repeats=True)
        assert result.ok, result.reasons
