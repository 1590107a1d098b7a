import io
import re
import shutil
from pathlib import Path

import pytest
from PIL import Image

import poemgen
from poemgen import PoemgenError

LINE = re.compile(r"^[\u4e00-\u9fff]{5}[，。]$")


@pytest.fixture(scope="module")
def pipe(tiny):
    return poemgen.load(clip=tiny.clip, poet=tiny.poet, device="cpu")


def assert_quatrain(poem, topk=5):
    assert isinstance(poem, poemgen.Poem)
    assert len(poem.lines) == 4 and all(len(line) == 5 for line in poem.lines)
    assert len(poem.keywords) == topk and isinstance(poem.keywords[0], poemgen.Keyword)
    assert str(poem) == poem.text
    rows = poem.text.split("\n")
    assert len(rows) == 4 and all(LINE.match(row) for row in rows)
    assert [row[-1] for row in rows] == ["，", "。", "，", "。"]


def test_write_accepts_every_kind_of_image(pipe, photo):
    data = photo.read_bytes()
    sources = [str(photo), Path(photo), Image.open(photo), data, io.BytesIO(data)]
    poems = [pipe.write(source, topk=5, seed=1) for source in sources]
    for poem in poems:
        assert_quatrain(poem)
    assert len({poem.text for poem in poems}) == 1  # same picture, same seed, same poem


def test_write_batch_gives_one_poem_per_image(pipe, tmp_path):
    from conftest import make_photo

    photos = [make_photo(tmp_path / f"{i}.png", (i * 60, 80, 200 - i * 50)) for i in range(3)]
    poems = pipe.write_batch(photos, topk=3, lines=8, chars=7, seed=0)
    assert len(poems) == 3
    for poem in poems:
        assert len(poem.lines) == 8 and all(len(line) == 7 for line in poem.lines)
        assert len(poem.keywords) == 3


def test_to_dict_has_the_json_shape(pipe, photo):
    data = pipe.write(photo, seed=0).to_dict(image="photo.jpg")
    assert set(data) == {"image", "keywords", "lines", "poem", "score", "notes"}
    assert set(data["score"]) == {"logprob", "coverage", "clip", "total"}
    assert set(data["keywords"][0]) == {"word", "score"}


def test_module_level_write_builds_one_default_pipeline(tiny, photo, monkeypatch):
    monkeypatch.setenv("POEMGEN_CLIP", tiny.clip)
    monkeypatch.setenv("POEMGEN_POET", tiny.poet)
    monkeypatch.setattr(poemgen, "_default_pipeline", None)
    loads = []
    real_load = poemgen.load
    monkeypatch.setattr(poemgen, "load", lambda *a, **k: loads.append(1) or real_load(*a, **k))
    assert_quatrain(poemgen.write(photo, topk=5, seed=0))
    assert_quatrain(poemgen.write(str(photo), topk=5, seed=0))
    assert len(loads) == 1


def test_poet_found_in_the_default_folder(tiny, photo, isolated_home):
    shutil.copytree(tiny.poet, isolated_home / "poet")
    assert_quatrain(poemgen.load(clip=tiny.clip, device="cpu").write(photo))


def test_default_poet_not_cached_falls_back_to_the_shipped_poet(tiny, caplog):
    pipe = poemgen.load(clip=tiny.clip, device="cpu")
    assert pipe.poet.format.name == "poem" and pipe.poet.name.endswith("mini")
    [record] = [r for r in caplog.records if r.name == "poemgen"]
    assert "hululuzhu/chinese-poem-t5-mengzi-finetune" in record.getMessage()


def test_a_named_public_poet_not_cached_is_a_user_error(tiny):
    with pytest.raises(PoemgenError, match="hululuzhu/chinese-poem-t5-mengzi-finetune"):
        poemgen.load(clip=tiny.clip, poet="hululuzhu/chinese-poem-t5-mengzi-finetune")


def test_default_poet_from_the_cache(tiny, photo, hub_cache):
    hub_cache("hululuzhu/chinese-poem-t5-mengzi-finetune", tiny.poet, skip=("poemgen.json",))
    pipe = poemgen.load(clip=tiny.clip, device="cpu")
    assert pipe.poet.format.name == "title"
    assert_quatrain(pipe.write(photo, seed=0, imitate="杜甫"))


def test_keywords_only_pipeline(tiny, photo):
    keywords_only = poemgen.load(clip=tiny.clip, device="cpu", need_poet=False)
    assert len(keywords_only.keywords(photo, topk=4)) == 4
    with pytest.raises(PoemgenError, match="without a poet"):
        keywords_only.write(photo)


def test_bad_image_raises_a_user_error(pipe, tmp_path):
    (tmp_path / "notes.txt").write_text("not a photo")
    with pytest.raises(PoemgenError, match="notes.txt"):
        pipe.write(tmp_path / "notes.txt")


def test_unusable_device_is_a_user_error(tiny):
    with pytest.raises(PoemgenError, match="device 'nonsense'"):
        poemgen.load(clip=tiny.clip, poet=tiny.poet, device="nonsense")


@pytest.mark.parametrize("bad", [{"topk": 0}, {"lines": 6}, {"chars": 4}, {"temperature": -1},
                                 {"top_p": 0}, {"top_p": 1.5}])
def test_bad_options_are_user_errors(pipe, photo, bad):
    with pytest.raises(PoemgenError):
        pipe.write(photo, **bad)


def test_options_object_and_overrides(pipe, photo):
    from poemgen.options import PoemOptions

    options = PoemOptions(topk=3, chars=7, seed=5)
    poem = pipe.write(photo, options, lines=8)
    assert len(poem.keywords) == 3 and len(poem.lines) == 8 and len(poem.lines[0]) == 7


def test_write_from_keywords_without_an_image(tiny):
    pipe = poemgen.load(poet=tiny.poet, device="cpu", need_clip=False)
    poem = pipe.write(keywords=["明月", "孤舟"], acrostic="春江花月", rhyme="xinyun", seed=2)
    assert [k.word for k in poem.keywords] == ["明月", "孤舟"]
    assert all(k.score is None for k in poem.keywords)
    assert "".join(line[0] for line in poem.lines) == "春江花月"
    assert poemgen.check(poem.text).ok
    with pytest.raises(PoemgenError, match="without CLIP"):
        pipe.keywords(b"not even read")
    with pytest.raises(PoemgenError, match="image or keywords"):
        pipe.write()


# --- a seed is a poem's own -------------------------------------------------------------------------

def test_a_seeded_poem_does_not_depend_on_its_batch(pipe, tmp_path):
    from conftest import make_photo

    a, b = make_photo(tmp_path / "a.png", (200, 80, 40)), make_photo(tmp_path / "b.png", (40, 80, 200))
    alone = pipe.write(a, seed=5).text
    assert pipe.write_batch([a, b], seed=5)[0].text == alone
    assert pipe.write_batch([b, a], seed=5)[1].text == alone
    assert [p.text for p in pipe.write_batch([a, a], seed=5)] == [alone, alone]
    assert pipe.write(a, seed=6).text != alone or pipe.write(a, seed=7).text != alone


def test_a_seeded_poem_leaves_torch_global_generator_alone(pipe, photo):
    torch = pytest.importorskip("torch")
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    pipe.write(photo, seed=5)
    assert torch.equal(torch.rand(3), expected)


def test_keywords_and_candidates_seed_each_poem(pipe):
    one = pipe.write(keywords=["明月", "孤舟"], seed=3, candidates=3)
    again = pipe.write_batch(keywords=[["青山"], ["明月", "孤舟"]], seed=3, candidates=3)[1]
    assert [c.text for c in one.candidates] == [c.text for c in again.candidates]


@pytest.mark.parametrize("seed", [-1, 2**64, 1.5, True, "1"])
def test_a_seed_outside_0_to_2_64_is_a_user_error(pipe, seed):
    with pytest.raises(PoemgenError, match="seed must be a whole number from 0 to 2\\*\\*64-1"):
        pipe.write(keywords=["明月"], seed=seed)


# --- errors a user causes are PoemgenError, with the CLI's validation ---------------------------------

@pytest.mark.parametrize("bad", [{"topk": "5"}, {"candidates": 2.0}, {"temperature": None},
                                 {"hint": None}, {"no_repeat": "yes"}, {"categories": [1]},
                                 {"colour": "red"}, {"form": "sonnet"}])
def test_wrong_types_and_names_are_user_errors(pipe, bad):
    with pytest.raises(PoemgenError):
        pipe.write(keywords=["明月"], **bad)


@pytest.mark.parametrize("words", [["moon"], "明月", [None], ["明月", 3]])
def test_keywords_are_checked_as_the_cli_checks_them(pipe, words):
    with pytest.raises(PoemgenError, match="keywords must be"):
        pipe.write(keywords=words)


def test_an_empty_image_is_a_user_error(pipe):
    with pytest.raises(PoemgenError, match="has no pixels"):
        pipe.write(Image.new("RGB", (0, 0)))


@pytest.mark.parametrize("text", [None, "白日依山尽".encode()])
def test_check_of_what_is_not_text_is_a_user_error(text):
    with pytest.raises(PoemgenError, match="as text"):
        poemgen.check(text)


def test_the_library_takes_the_cli_names(pipe):
    from poemgen.options import PoemOptions

    poem = pipe.write(keywords=["明月", "孤舟"], form="qijue", allow_repeats=True, seed=1)
    assert len(poem.lines) == 4 and len(poem.lines[0]) == 7
    assert PoemOptions(categories="山水,草木").categories == ("山水", "草木")
