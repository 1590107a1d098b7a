import pytest
import torch
from PIL import Image
from transformers import ChineseCLIPModel

from poemgen.keywords import KeywordScorer, Vocabulary, VocabularyError
from poemgen.options import Selection

SMALL = Vocabulary.parse("明月\t天象\n孤舟\t建筑器物\n寒梅\t草木\n青山\t山水\n")


def images():
    return [Image.new("RGB", (40, 30), c) for c in ((200, 20, 20), (20, 200, 20), (20, 20, 200))]


def test_default_vocabulary_is_valid_and_packaged():
    vocabulary = Vocabulary.default()
    assert len(vocabulary.words) >= 300
    assert len(set(vocabulary.words)) == len(vocabulary.words)
    assert {"天象", "山水", "草木", "情思"} <= set(vocabulary.categories)


def test_scores_are_probabilities_sorted_best_first(tiny):
    scorer = KeywordScorer.load(tiny.clip)
    for keywords in scorer.score(images(), topk=5):
        assert len(keywords) == 5
        scores = [k.score for k in keywords]
        assert scores == sorted(scores, reverse=True)
        assert all(0 < s <= 1 for s in scores) and sum(scores) <= 1 + 1e-6
        assert all(k.word in scorer.vocabulary.words for k in keywords)


def test_topk_larger_than_the_vocabulary_gives_every_word(tiny):
    scorer = KeywordScorer.load(tiny.clip, vocabulary=SMALL)
    (keywords,) = scorer.score(images()[:1], topk=50)
    assert sorted(k.word for k in keywords) == sorted(SMALL.words)
    assert sum(k.score for k in keywords) == pytest.approx(1.0, abs=1e-5)


def test_batched_scoring_equals_one_at_a_time(tiny):
    scorer = KeywordScorer.load(tiny.clip)
    together = scorer.score(images(), topk=3, batch_size=2)
    alone = [scorer.score([image], topk=3)[0] for image in images()]
    for a, b in zip(together, alone):
        assert [k.word for k in a] == [k.word for k in b]
        assert [k.score for k in a] == pytest.approx([k.score for k in b], abs=1e-5)


def test_photos_prepared_in_threads_and_normalised_on_the_device_match_the_processor(tiny):
    """The image processor alone (resize, crop, rescale, normalise per photo) and the split
    path (resize and crop in worker threads, then one normalisation for the batch) agree."""
    scorer = KeywordScorer.load(tiny.clip)
    photos = images() + [Image.effect_noise((300, 97), 60).convert("RGB"),
                         Image.new("RGB", (97, 300), (200, 30, 10))]
    expected = scorer.processor(images=photos, return_tensors="pt")["pixel_values"]
    prepared = scorer.prepare_all(photos)
    assert all(p.shape == expected.shape[1:] for p in prepared)
    assert torch.allclose(scorer.normalize(prepared), expected, atol=1e-5)
    with torch.inference_mode():
        direct = scorer.model.get_image_features(pixel_values=expected).pooler_output
    assert torch.allclose(scorer.embed_images(photos, batch_size=3),
                          torch.nn.functional.normalize(direct, dim=-1), atol=1e-5)


def test_clip_in_bfloat16_scores_within_1e_2_of_float32(tiny):
    full = KeywordScorer.load(tiny.clip)
    half = KeywordScorer.load(tiny.clip, dtype="bfloat16")
    assert full.model.dtype == torch.float32 and half.model.dtype == torch.bfloat16
    assert torch.equal(full.text_embeddings, half.text_embeddings)  # computed in float32
    photos = images() + [Image.effect_noise((64, 48), 60).convert("RGB")]
    a, b = full.embed_images(photos), half.embed_images(photos)
    similarity = (a - b) @ full.text_embeddings.T
    assert 0 < similarity.abs().max() < 1e-2
    scale = full.model.logit_scale.detach().exp()
    probs = [(scale * e @ full.text_embeddings.T).softmax(-1) for e in (a, b)]
    assert (probs[0] - probs[1]).abs().max() < 1e-2
    words = [[k.word for k in keywords] for keywords in half.keywords_for(b, topk=3)]
    assert words and all(len(w) == 3 for w in words)


def test_clip_dtype_is_float32_on_cpu_unless_asked(tiny):
    from poemgen.cli import CLIP_DTYPE_NAMES
    from poemgen.errors import PoemgenError
    from poemgen.keywords import CLIP_DTYPES, clip_dtype

    assert set(CLIP_DTYPE_NAMES) == {"auto", *CLIP_DTYPES}
    assert clip_dtype("auto", torch.device("cpu")) == torch.float32
    assert clip_dtype(None, torch.device("cuda")) == torch.bfloat16
    with pytest.raises(PoemgenError, match="not one of auto, float32"):
        clip_dtype("int8", torch.device("cpu"))


def test_text_embeddings_average_the_normalised_templates(tiny):
    templates = ("{}", "{}的照片")
    scorer = KeywordScorer.load(tiny.clip, vocabulary=SMALL, templates=templates)
    with torch.no_grad():
        inputs = scorer.processor(text=["明月", "明月的照片"], padding=True, return_tensors="pt")
        each = torch.nn.functional.normalize(scorer.model.get_text_features(**inputs).pooler_output, dim=-1)
    expected = torch.nn.functional.normalize(each.mean(0), dim=-1)
    assert torch.allclose(scorer.text_embeddings[0], expected, atol=1e-5)
    assert torch.allclose(scorer.text_embeddings.norm(dim=-1), torch.ones(len(SMALL.words)), atol=1e-5)


def test_embedding_cache_is_reused_and_invalidated(tiny, isolated_home, monkeypatch):
    first = KeywordScorer.load(tiny.clip, vocabulary=SMALL)
    assert not first.cache_hit
    assert len(list((isolated_home / "embeddings").glob("*.pt"))) == 1

    def no_text_encoding(*args, **kwargs):
        raise AssertionError("the vocabulary was encoded again")

    with monkeypatch.context() as patch:
        patch.setattr(ChineseCLIPModel, "get_text_features", no_text_encoding)
        second = KeywordScorer.load(tiny.clip, vocabulary=SMALL)
    assert second.cache_hit
    assert torch.equal(first.text_embeddings, second.text_embeddings)

    grown = Vocabulary.parse("明月\t天象\n孤舟\t建筑器物\n寒梅\t草木\n青山\t山水\n落日\t天象\n")
    assert not KeywordScorer.load(tiny.clip, vocabulary=grown).cache_hit
    assert not KeywordScorer.load(tiny.clip, vocabulary=SMALL, templates=("{}的画",)).cache_hit
    assert len(list((isolated_home / "embeddings").glob("*.pt"))) == 3


@pytest.mark.parametrize("text,message", [
    ("明月 天象\n", r":1: expected WORD<TAB>CATEGORY"),
    ("# comment\n\n明月\t天象\nmoon\t天象\n", r":4: 'moon' is not 1-8 Chinese characters"),
    ("明月\t天象\n孤舟\t器物\n明月\t天象\n", r":3: '明月' already appears on line 1"),
    ("明月\t\n", r":1: expected WORD<TAB>CATEGORY"),
    ("# only comments\n", r"no words found"),
])
def test_malformed_vocabulary_names_the_line(tmp_path, text, message):
    path = tmp_path / "vocab.txt"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(VocabularyError, match=message) as error:
        Vocabulary.from_file(path)
    assert str(path) in str(error.value) and "\n" not in str(error.value)


def test_unreadable_vocabulary_is_a_clear_error(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes("明月\t天象\n".encode("gbk"))
    with pytest.raises(VocabularyError, match="cannot be read"):
        Vocabulary.from_file(path)
    with pytest.raises(VocabularyError, match="cannot be read"):
        Vocabulary.from_file(tmp_path / "missing.txt")


MIXED = Vocabulary.parse("".join(f"{w}\t{c}\n" for w, c in [
    ("明月", "天象"), ("新月", "天象"), ("残月", "天象"), ("落日", "天象"), ("白云", "天象"),
    ("青山", "山水"), ("远山", "山水"), ("江", "山水"), ("寒梅", "草木"), ("杨柳", "草木"),
    ("思乡", "情思"), ("离别", "情思"), ("闲适", "情思")]))


@pytest.fixture(scope="module")
def mixed(tiny):
    return KeywordScorer.load(tiny.clip, vocabulary=MIXED)


def categories_of(scorer, keywords):
    return [scorer.vocabulary.categories[scorer.vocabulary.words.index(k.word)] for k in keywords]


def test_at_most_per_category_from_one_category(mixed):
    for keywords in mixed.score(images(), topk=6, selection=Selection(per_category=1, emotions=True)):
        found = categories_of(mixed, keywords)
        assert len(found) == len(set(found)) == 4  # only four categories exist


def test_categories_restrict_the_choice_and_unknown_ones_are_refused(mixed):
    for keywords in mixed.score(images(), topk=3, selection=Selection(categories=("山水", "草木"))):
        assert set(categories_of(mixed, keywords)) <= {"山水", "草木"}
        assert sum(k.score for k in keywords) <= 1 + 1e-6
    with pytest.raises(VocabularyError, match="unknown category 海洋.*天象,山水,草木,情思"):
        mixed.score(images(), selection=Selection(categories=("海洋",)))


def test_feelings_only_when_asked_or_likely(mixed):
    """Random weights give every word about 1/13 probability: above the threshold. A stricter
    threshold shows the rule: 情思 words appear only with emotions=True."""
    from poemgen import keywords as module

    many = Selection(per_category=5, diversity=0.0)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(module, "EMOTION_THRESHOLD", 0.99)
        plain = mixed.score(images(), topk=13, selection=many)
        asked = mixed.score(images(), topk=13, selection=Selection(per_category=5, emotions=True))
    assert all("情思" not in categories_of(mixed, k) for k in plain)
    assert all(categories_of(mixed, k).count("情思") == 3 for k in asked)


def test_no_diversity_is_plain_ranking_and_diversity_spreads_the_list(mixed):
    ranked = mixed.score(images(), topk=4, selection=Selection(per_category=9, diversity=0.0,
                                                               emotions=True))
    for keywords, image in zip(ranked, images()):
        (probs,) = mixed.score([image], topk=13, selection=Selection(per_category=9,
                                                                     diversity=0.0, emotions=True))
        assert [k.word for k in keywords] == [k.word for k in probs[:4]]

    def spread(keywords):
        index = [mixed.vocabulary.words.index(k.word) for k in keywords]
        e = mixed.text_embeddings[index]
        return float((e @ e.T).fill_diagonal_(-1).max())

    diverse = mixed.score(images(), topk=4, selection=Selection(per_category=9, diversity=0.9,
                                                                emotions=True))
    assert all(spread(d) <= spread(r) + 1e-6 for d, r in zip(diverse, ranked))
