import json
import re
import shutil

import pytest
import torch

from poemgen import prompt
from poemgen.models import ModelLoadError
from poemgen.options import PoemOptions
from poemgen.errors import PoemgenError
from poemgen.constraints import VerseProcessor
from poemgen.masks import VersePlan
from poemgen.verse_state import initial_state
from poemgen.poet import Poet, resolve_format

HAN = re.compile(r"^[\u4e00-\u9fff]+$")
KEYWORDS = [["明月", "孤舟", "寒梅"], ["青山", "白云"], ["落日"]]


@pytest.fixture(scope="module")
def poet(tiny):
    return Poet.load(tiny.poet, "cpu")


def write(poet, keywords, options):
    """The lines of the first candidate for each keyword list."""
    return [candidates[0].lines for candidates in poet.write(keywords, options)]


@pytest.mark.parametrize("lines,chars", [(4, 5), (4, 7), (8, 5), (8, 7)])
@pytest.mark.parametrize("temperature", [0.0, 0.9, 3.0])
def test_every_line_has_exactly_the_requested_characters(poet, lines, chars, temperature):
    options = PoemOptions(lines=lines, chars=chars, temperature=temperature, top_p=1.0, seed=3)
    poems = write(poet, KEYWORDS, options)
    assert len(poems) == len(KEYWORDS)
    for poem in poems:
        assert len(poem) == lines
        for line in poem:
            assert len(line) == chars and HAN.match(line), line


def test_same_seed_same_poem_and_greedy_is_deterministic(poet):
    seeded = PoemOptions(seed=7)
    assert write(poet, KEYWORDS, seeded) == write(poet, KEYWORDS, seeded)
    greedy = PoemOptions(temperature=0)
    assert write(poet, KEYWORDS, greedy) == write(poet, KEYWORDS, greedy)


def test_different_seeds_give_different_poems(poet):
    poems = {str(write(poet, KEYWORDS, PoemOptions(chars=7, temperature=1.5, seed=s))) for s in range(4)}
    assert len(poems) > 1


def test_processor_counts_characters_not_tokens(poet):
    """After tokens worth 3 characters, only pieces of 1-2 characters (no boundary mark) remain."""
    table = poet.table
    options = PoemOptions(rhyme="none", tones="none", no_repeat=False)
    plan = VersePlan(options.form, options.rules, table, None)
    three = [i for i in range(len(table.chars)) if table.chars[i] == 3 and not table.leading[i]]
    two = [i for i in range(len(table.chars)) if table.chars[i] == 2 and not table.leading[i]]
    assert three and two, "the tiny tokenizer should have multi-character pieces"
    processor = VerseProcessor(plan, 0, [initial_state(plan)], poet.tokenizer.eos_token_id)
    scores = processor(torch.tensor([[0, three[0]]]), torch.zeros(1, len(table.chars)))
    allowed = torch.isfinite(scores[0]).nonzero().flatten()
    assert len(allowed) > 0
    assert all(1 <= table.chars[i] <= 2 and not table.leading[i] for i in allowed.tolist())

    scores = processor(torch.tensor([[0, three[0], two[0]]]), torch.zeros(1, len(table.chars)))
    assert torch.isfinite(scores[0]).nonzero().flatten().tolist() == [poet.tokenizer.eos_token_id]


def copy_poet(tiny, tmp_path):
    folder = tmp_path / "poet"
    shutil.copytree(tiny.poet, folder)
    return folder


def test_poet_without_metadata_is_refused(tiny, tmp_path):
    folder = copy_poet(tiny, tmp_path)
    (folder / prompt.METADATA_FILE).unlink()
    with pytest.raises(ModelLoadError, match="prompt format is unknown"):
        Poet.load(str(folder))


def test_poet_with_another_format_version_is_refused(tiny, tmp_path):
    folder = copy_poet(tiny, tmp_path)
    (folder / prompt.METADATA_FILE).write_text(json.dumps(
        {"prompt_format": "lines", "format_version": prompt.LINES.version + 1}))
    with pytest.raises(ModelLoadError, match="trained on prompt format"):
        Poet.load(str(folder))


def test_poet_with_broken_metadata_is_refused(tiny, tmp_path):
    folder = copy_poet(tiny, tmp_path)
    (folder / prompt.METADATA_FILE).write_text("{not json")
    with pytest.raises(ModelLoadError, match="cannot be read"):
        Poet.load(str(folder))


@pytest.fixture(scope="module")
def title_poet(tiny):
    return Poet.load(tiny.poet, "cpu", prompt_format="title")


@pytest.mark.parametrize("lines,chars", [(4, 5), (8, 7)])
@pytest.mark.parametrize("temperature", [0.0, 2.0])
def test_title_format_writes_exact_lines_with_the_poem_so_far_as_prefix(title_poet, lines, chars,
                                                                         temperature):
    """Rows whose prefixes tokenise to different lengths are generated in separate groups."""
    options = PoemOptions(lines=lines, chars=chars, temperature=temperature, seed=2, imitate="李白")
    poems = write(title_poet, KEYWORDS * 2, options)
    for poem in poems:
        assert len(poem) == lines and all(len(line) == chars and HAN.match(line) for line in poem)


def test_title_format_decoder_sees_the_accepted_lines(title_poet, monkeypatch):
    seen = []
    real_generate = type(title_poet.model).generate

    def spy(model, *args, **kwargs):
        text = title_poet.tokenizer.decode(kwargs["decoder_input_ids"][0], skip_special_tokens=True)
        seen.append("".join(text.split()).replace(",", "，"))  # undo the tokenizer's NFKC
        return real_generate(model, *args, **kwargs)

    monkeypatch.setattr(type(title_poet.model), "generate", spy)
    (poem,) = write(title_poet, [["明月"]], PoemOptions(temperature=0))
    assert seen == ["".join(prompt.punctuate(poem[:i])) for i in range(4)]


def test_registry_gives_the_public_poets_format_without_the_network(monkeypatch):
    import huggingface_hub

    def no_network(*args, **kwargs):
        raise AssertionError("the Hub was asked")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", no_network)
    assert resolve_format("hululuzhu/chinese-poem-t5-mengzi-finetune").name == "title"
    assert resolve_format("anything/else", "lines").name == "lines"


def test_unknown_format_override_is_refused():
    with pytest.raises(PoemgenError, match="unknown prompt format 'verse'"):
        resolve_format("anything/else", "verse")


def test_metadata_naming_an_unknown_format_is_refused(tiny, tmp_path):
    folder = copy_poet(tiny, tmp_path)
    (folder / prompt.METADATA_FILE).write_text(json.dumps({"prompt_format": "sonnet",
                                                           "format_version": 1}))
    with pytest.raises(ModelLoadError, match="unknown prompt format 'sonnet'"):
        Poet.load(str(folder))


def test_imitate_is_refused_by_a_lines_poet(poet):
    with pytest.raises(PoemgenError, match="cannot imitate"):
        write(poet, KEYWORDS, PoemOptions(imitate="李白"))


def test_a_separate_lm_head_is_loaded_as_saved(tiny, tmp_path):
    """Mengzi-T5 (T5 v1.1) has an LM head of its own and no decoder-output scaling; transformers 5
    forces `tie_word_embeddings=True` on every T5Config, so check the checkpoint's head survives."""
    from safetensors.torch import load_file, save_file

    folder = shutil.copytree(tiny.poet, tmp_path / "untied")
    weights = load_file(folder / "model.safetensors")
    torch.manual_seed(1)
    weights["lm_head.weight"] = torch.randn_like(weights["shared.weight"])
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    config = json.loads((folder / "config.json").read_text())
    config["tie_word_embeddings"] = False
    config.pop("scale_decoder_outputs", None)
    (folder / "config.json").write_text(json.dumps(config))

    model = Poet.load(str(folder), "cpu").model
    assert torch.equal(model.lm_head.weight, weights["lm_head.weight"])
    assert not torch.equal(model.lm_head.weight, model.shared.weight)
    assert not model.config.scale_decoder_outputs


def test_plans_are_reused_and_give_the_same_poems(tiny):
    poet = Poet.load(tiny.poet, "cpu")
    options = PoemOptions(lines=4, chars=7, tones="strict", seed=5)
    first = write(poet, KEYWORDS, options)
    plan = poet.plan(options)
    assert poet.plan(PoemOptions(lines=4, chars=7, tones="strict", seed=9)) is plan  # seed aside
    assert poet.plan(PoemOptions(lines=4, chars=5, tones="strict")) is not plan
    assert write(poet, KEYWORDS, options) == first  # the plan's cached masks change nothing
    many = [PoemOptions(lines=lines, chars=chars, tones=tones, rhyme=rhyme, no_repeat=no_repeat)
            for lines in (4, 8) for chars in (5, 7) for tones in ("strict", "loose", "none")
            for rhyme in ("xinyun", "none") for no_repeat in (True, False)]  # 48 distinct
    for options in many + many[::-1]:
        poet.plan(options)
    assert len(poet.plans) == 32 and poet.plan(many[0]) is poet.plan(many[0])


# --- line search and scoring -----------------------------------------------------------------------

def mean_logprob(line_scores: list[float]) -> float:
    return sum(line_scores) / len(line_scores)


@pytest.fixture(scope="module")
def mini():
    """The shipped poet: a character poet, whose tokens spell a line one way only, so that
    teacher-forced scores and the scores its writing recorded are of the same tokens."""
    from poemgen.models import shipped_poet_folder

    return Poet.load(str(shipped_poet_folder()), "cpu")


def test_score_lines_reads_poems_as_the_poet_writes_them(mini):
    """Teacher-forced scores of a written poem equal the log-probabilities its writing recorded."""
    poet = mini
    options = PoemOptions(lines=4, chars=7, temperature=0, rhyme="none", tones="none",
                          no_repeat=False)
    verses = [v[0] for v in poet.write(KEYWORDS, options)]
    scores = poet.score_lines(KEYWORDS, [v.lines for v in verses], batch_size=5)
    for verse, lines in zip(verses, scores):
        assert sum(len(line) for line in lines) == verse.tokens
        assert sum(map(sum, lines)) == pytest.approx(verse.logprob, abs=1e-3)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_line_search_keeps_the_likeliest_line_and_every_rule(mini, seed):
    """Candidate 0 of each line is the single draw, so the first line chosen from 6 is at
    least as likely as the single draw's; every rule holds as without the search."""
    from poemgen.prosody import check

    poet = mini
    single = PoemOptions(chars=7, seed=seed, temperature=1.5, line_candidates=1)
    searched = PoemOptions(chars=7, seed=seed, temperature=1.5, line_candidates=6)
    one, six = write(poet, KEYWORDS, single), write(poet, KEYWORDS, searched)
    first, best = poet.score_lines(KEYWORDS, one), poet.score_lines(KEYWORDS, six)
    for a, b in zip(first, best):
        assert mean_logprob(b[0]) >= mean_logprob(a[0]) - 1e-6
    assert one != six
    for poem in six:
        result = check("，".join(poem) + "。", no_repeats=True)
        assert result.rhyme_ok and result.tones_ok and result.repeats_ok, result.reasons


def test_line_search_seeds_each_poem_on_its_own(poet):
    options = PoemOptions(seed=5, line_candidates=4, candidates=2)
    alone = poet.write([KEYWORDS[1]], options)[0]
    among = poet.write(KEYWORDS, options)[1]
    assert [v.lines for v in alone] == [v.lines for v in among]


@pytest.mark.parametrize("bad,message", [(dict(line_candidates=0), "line_candidates must be"),
                                         (dict(line_candidates=65), "line_candidates must be"),
                                         (dict(polish=-1), "polish must be"),
                                         (dict(polish=9), "polish must be")])
def test_line_candidates_out_of_range_are_option_errors(bad, message):
    with pytest.raises(PoemgenError, match=message):
        PoemOptions(**bad)


def test_greedy_decoding_writes_one_candidate_a_line(poet):
    greedy = PoemOptions(temperature=0, line_candidates=1)
    assert write(poet, KEYWORDS, PoemOptions(temperature=0, line_candidates=16)) == \
        write(poet, KEYWORDS, greedy)


def test_polish_keeps_the_rules_and_never_makes_the_poem_less_likely(mini):
    from poemgen.prosody import check

    base = PoemOptions(chars=7, seed=4, line_candidates=4)
    plain = [v[0] for v in mini.write(KEYWORDS, base)]
    polished = [v[0] for v in mini.write(KEYWORDS, PoemOptions(chars=7, seed=4, line_candidates=4,
                                                               polish=2))]
    for before, after in zip(plain, polished):
        assert after.logprob / after.tokens >= before.logprob / before.tokens - 1e-4
        result = check("，".join(after.lines) + "。", no_repeats=True)
        assert result.ok, result.reasons
