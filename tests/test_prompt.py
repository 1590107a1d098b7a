import unicodedata

import pytest

from poemgen import prompt
from poemgen.prompt import Form


def test_prompt_holds_form_position_keywords_and_previous_lines():
    text = prompt.line_prompt(Form(4, 7), ["明月", "孤舟"], ["白日依山尽黄河", "欲穷千里目更上"])
    assert text.startswith("七言绝句 第三句。")
    assert "明月 孤舟" in text and "白日依山尽黄河 欲穷千里目更上" in text


def test_first_line_prompt_says_there_is_no_previous_line():
    assert prompt.line_prompt(Form(8, 5), ["寒梅"], []) == "五言律诗 第一句。关键词 寒梅。上文 无。"


@pytest.mark.parametrize("form", [Form(4, 5), Form(4, 7), Form(8, 5), Form(8, 7)])
def test_prompt_survives_the_tokenizers_nfkc_normalisation(form):
    previous = ["一二三四五六七"[: form.chars]] * (form.lines - 1)
    text = prompt.line_prompt(form, ["明月", "孤舟"], previous)
    assert unicodedata.normalize("NFKC", text) == text
    assert "\n" not in text


def test_format_poem_restores_full_width_punctuation():
    assert prompt.format_poem(["床前明月光", "疑是地上霜"]) == "床前明月光，\n疑是地上霜。"


@pytest.mark.parametrize("lines,chars", [(3, 5), (4, 6), (0, 5)])
def test_unsupported_forms_are_refused(lines, chars):
    with pytest.raises(ValueError, match="unsupported form"):
        Form(lines, chars)


def test_metadata_round_trip(tmp_path):
    prompt.write_metadata(tmp_path, base_model="tiny")
    metadata = prompt.read_metadata(tmp_path)
    assert metadata["prompt_format"] == prompt.FORMAT_NAME
    assert metadata["format_version"] == prompt.FORMAT_VERSION
    assert metadata["base_model"] == "tiny"
    assert prompt.read_metadata(tmp_path / "missing") is None
