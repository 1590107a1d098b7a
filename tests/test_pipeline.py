import io
import json
import re
import shutil
from pathlib import Path

import pytest
from PIL import Image

import poemgen
from poemgen import PoemgenError
from poemgen.cli import main
from poemgen.options import OptionsError, PoemOptions, with_overrides

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


def test_poems_with_their_own_seeds_in_one_batch_are_the_poems_written_alone(pipe, tmp_path):
    """A batch of photos (or keyword lists) with a seed each: each poem is the one written
    alone with its seed, candidates and polish included."""
    from conftest import make_photo

    photos = [make_photo(tmp_path / f"{i}.png", (60 * i, 80, 200 - 60 * i)) for i in range(3)]
    options = dict(candidates=2, polish=1)
    batch = pipe.write_batch(photos, seeds=[5, 2**64 - 1, None], **options)
    assert batch[0].text == pipe.write(photos[0], seed=5, **options).text
    assert batch[1].text == pipe.write(photos[1], seed=2**64 - 1, **options).text
    assert len(batch[2].lines) == 4
    keywords, seeds = [["明月"], ["孤舟"], ["明月"], ["明月"]], [1, 1, 2, 1]
    batch = pipe.write_batch(keywords=keywords, seeds=seeds, seed=9)  # seeds win over seed
    assert [p.text for p in batch] == [pipe.write(keywords=words, seed=seed).text
                                       for words, seed in zip(keywords, seeds)]
    assert batch[0].text == batch[3].text


@pytest.mark.parametrize("seeds, message", [([1], "one per image or keyword list \\(2\\), got 1"),
                                            ([1, -1], "seed must be a whole number")])
def test_seeds_that_do_not_fit_the_batch_are_user_errors(pipe, seeds, message):
    with pytest.raises(OptionsError, match=message):
        pipe.write_batch(keywords=[["明月"], ["孤舟"]], seeds=seeds)


@pytest.mark.parametrize("seed", [-1, 2**64, 1.5, True, "1"])
def test_a_seed_outside_0_to_2_64_is_a_user_error(pipe, seed):
    with pytest.raises(PoemgenError, match="seed must be a whole number from 0 to 2\\*\\*64-1"):
        pipe.write(keywords=["明月"], seed=seed)


# --- errors a user causes are PoemgenError, with the CLI's validation ---------------------------------

@pytest.mark.parametrize("bad", [{"topk": "5"}, {"candidates": 2.0}, {"temperature": "hot"},
                                 {"hint": 3}, {"no_repeat": "yes"}, {"categories": [1]},
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


# --- one set of rules for the CLI, the API and the library ------------------------------------------

def test_given_lines_set_the_form_in_the_library_as_in_the_cli(pipe, tiny, capsys):
    """Without a size asked for, given lines of seven characters make a 七言 poem, and more
    than four lines a 律诗: in PoemOptions itself, so the library, the CLI and the API agree."""
    poem = pipe.write(keywords=["明月"], given=["江上明月照孤舟"], seed=3)
    assert poem.lines[0] == "江上明月照孤舟" and [len(line) for line in poem.lines] == [7] * 4
    code = main(["--keywords", "明月", "--poet", tiny.poet, "--begin", "江上明月照孤舟",
                 "--seed", "3", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert json.loads(out)["lines"] == poem.lines
    eight = pipe.write(keywords=["明月"], given=["明月照孤舟", None, None, None, "青山白云飞"])
    assert len(eight.lines) == 8 and eight.lines[4] == "青山白云飞"
    assert PoemOptions(given=["江上明月照孤舟"]).chars == 7
    assert with_overrides(PoemOptions(seed=1), given=["江上明月照孤舟"]).form.short_name == "七绝"
    assert PoemOptions().form.short_name == "五绝"
    with pytest.raises(OptionsError, match="has 7 characters, but a 五绝 line has 5"):
        pipe.write(keywords=["明月"], given=["江上明月照孤舟"], chars=5)
    with pytest.raises(OptionsError, match="has 7 characters, but a 五律 line has 5"):
        pipe.write(keywords=["明月"], options=PoemOptions(lines=8, chars=5),
                   given=["江上明月照孤舟"])


def test_a_rhyme_group_without_a_rhyme_system_is_one_clear_error(pipe, tiny, capsys):
    for tones in ("none", "loose"):
        with pytest.raises(OptionsError, match="rhyme group '十唐' needs a rhyme system"):
            pipe.write(keywords=["明月"], rhyme="none", tones=tones, rhyme_group="十唐")
    code = main(["--keywords", "明月", "--poet", tiny.poet, "--rhyme", "none",
                 "--rhyme-group", "十唐"])
    err = capsys.readouterr().err
    assert code == 2 and "needs a rhyme system" in err and len(err.strip().splitlines()) == 1
    with pytest.raises(PoemgenError, match="rhyme group '\\\\ud800' is not a xinyun group"):
        pipe.write(keywords=["明月"], rhyme_group="\ud800")


def test_the_default_pipeline_writes_from_keywords_without_clip(tiny, monkeypatch):
    """`poemgen.write(keywords=...)` needs no CLIP (it loads on the first image), takes None
    for any option as its default, and loading prints no transformers bars."""
    import poemgen
    from poemgen import pipeline

    monkeypatch.setenv("POEMGEN_POET", tiny.poet)
    monkeypatch.setenv("POEMGEN_CLIP", "/nowhere/clip")  # would fail if CLIP were loaded
    monkeypatch.setattr(poemgen, "_default_pipeline", None)
    poem = poemgen.write(keywords=["明月", "孤舟"], given=None, seed=None, form=None,
                         allow_repeats=None)
    assert len(poem.lines) == 4 and poemgen._default_pipeline._scorer is None
    with pytest.raises(poemgen.PoemgenError, match="unknown option 'colour'"):
        poemgen.write(keywords=["明月"], colour=None)
    monkeypatch.setenv("POEMGEN_CLIP", tiny.clip)
    assert isinstance(poemgen._default_pipeline.scorer, pipeline.KeywordScorer)


def test_loading_hides_transformers_bars_and_restores_its_settings(tiny, capfd):
    from transformers.utils import logging as hf_logging

    from poemgen import load

    hook = hf_logging.set_tqdm_hook(None)  # as a fresh process has it (the CLI's tests hide
    verbosity = hf_logging.get_verbosity()  # the bars for the whole process)
    hf_logging.set_verbosity_warning()
    try:
        load(tiny.clip, tiny.poet, "cpu")
        assert "Loading weights" not in capfd.readouterr().err
        assert hf_logging.get_verbosity() == hf_logging.WARNING
        assert hf_logging.set_tqdm_hook(hook) is None  # restored after loading
    finally:
        hf_logging.set_tqdm_hook(hook)
        hf_logging.set_verbosity(verbosity)
