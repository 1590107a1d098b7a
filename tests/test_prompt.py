import unicodedata

import pytest

from poemgen import prompt
from poemgen.prompt import LINES, Form

TITLE = prompt.FORMATS["title"]


def test_lines_prompt_holds_form_position_keywords_and_previous_lines():
    text = LINES.encoder_text(Form(4, 7), ["明月", "孤舟"], ["白日依山尽黄河", "欲穷千里目更上"])
    assert text.startswith("七言绝句 第三句。")
    assert "明月 孤舟" in text and "白日依山尽黄河 欲穷千里目更上" in text
    assert LINES.decoder_prefix(["白日依山尽黄河"]) == ""


def test_first_line_prompt_says_there_is_no_previous_line():
    assert LINES.encoder_text(Form(8, 5), ["寒梅"], []) == "五言律诗 第一句。关键词 寒梅。上文 无。"


def test_hint_comes_before_the_image_keywords():
    assert "关键词 思乡 明月。" in LINES.encoder_text(Form(), ["明月"], [], hint="思乡")


@pytest.mark.parametrize("form", [Form(4, 5), Form(4, 7), Form(8, 5), Form(8, 7)])
def test_lines_prompt_survives_the_tokenizers_nfkc_normalisation(form):
    previous = ["一二三四五六七"[: form.chars]] * (form.lines - 1)
    text = LINES.encoder_text(form, ["明月", "孤舟"], previous)
    assert unicodedata.normalize("NFKC", text) == text
    assert "\n" not in text


def test_title_prompt_is_the_public_poets_format():
    assert TITLE.encoder_text(Form(), ["明月", "孤舟"], []) == "作诗：明月孤舟"
    assert TITLE.encoder_text(Form(), ["明月"], ["床前明月光"], imitate="李白") == "作诗：明月</s>模仿：李白"


def test_title_fits_whole_keywords_into_twelve_characters():
    words = ["明月", "孤舟", "寒梅", "青山", "白云", "落日", "长河"]
    assert TITLE.title(words) == "明月孤舟寒梅青山白云落日"
    assert TITLE.title(["蓑笠翁", "明月", "万家灯火", "孤舟", "江"], hint="秋 思") == "秋思蓑笠翁明月万家灯火江"
    assert len(TITLE.title([], hint="一" * 20)) == 12


def test_title_decoder_prefix_is_the_punctuated_poem_so_far():
    assert TITLE.decoder_prefix([]) == ""
    assert TITLE.decoder_prefix(["床前明月光", "疑是地上霜", "举头望明月"]) == \
        "床前明月光，疑是地上霜。举头望明月，"


def test_format_poem_restores_full_width_punctuation():
    assert prompt.format_poem(["床前明月光", "疑是地上霜"]) == "床前明月光，\n疑是地上霜。"


@pytest.mark.parametrize("lines,chars", [(3, 5), (4, 6), (0, 5)])
def test_unsupported_forms_are_refused(lines, chars):
    with pytest.raises(ValueError, match="unsupported form"):
        Form(lines, chars)


def test_unknown_format_lists_the_known_ones():
    with pytest.raises(KeyError, match="lines, title"):
        prompt.get_format("verse")


def test_metadata_round_trip(tmp_path):
    prompt.write_metadata(tmp_path, base_model="tiny")
    metadata = prompt.read_metadata(tmp_path)
    assert metadata["prompt_format"] == "lines" and metadata["format_version"] == LINES.version
    assert metadata["base_model"] == "tiny"
    assert prompt.read_metadata(tmp_path / "missing") is None
