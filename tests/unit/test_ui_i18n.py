"""The chat's strings exist in every language, for each locale Gradio may look up."""

from slm.webui.i18n import UI_STRINGS, gradio_i18n, translations


def test_every_string_in_every_language():
    for key, texts in UI_STRINGS.items():
        assert set(texts) == {"en", "zh", "id"} and all(texts.values()), key
    table = translations()
    assert table["zh-CN"]["ask"] == table["zh"]["ask"] == "提问"
    assert table["id"]["helpful"].startswith("👍") and table["en"]["not_helpful"].startswith("👎")


def test_gradio_i18n_builds():
    i18n = gradio_i18n()
    assert i18n.translations_dict["zh-CN"]["title"] == "向文档提问"
