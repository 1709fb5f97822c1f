"""Headless Chromium has the fonts the chat needs: the 👍/👎 feedback buttons in colour (Noto Color Emoji) and
Chinese answers in real glyphs (Noto CJK), not the empty boxes Debian's bare Chromium shows (scripts/install.sh)."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

CHROMIUM = "/usr/bin/chromium"
# The chat's own strings: its feedback buttons (slm/webui/app.py) and a Chinese answer with a citation.
PAGE = """<html><body style="font-family: sans-serif; font-size: 48px; background: white; color: black">
<div><span id="up">👍</span> <span id="down">👎</span> <span id="box">\U000f0000</span></div>
<div><span id="zh">退货期限</span> <span id="zh-box">\U000f0000\U000f0000\U000f0000\U000f0000</span></div>
<p style="font-size: 20px">根据现有文档，顾客可以在收到商品后三十天内申请退货 [1]。 <button>👍 Helpful</button> <button>👎 Not helpful</button></p>
</body></html>"""


def _colourful(png: bytes) -> int:
    """Pixels whose channels differ by more than 60: colour, which a tofu box (black on white) never has."""
    from PIL import Image

    data = Image.open(io.BytesIO(png)).convert("RGB").tobytes()
    return sum(1 for i in range(0, len(data), 3) if max(data[i : i + 3]) - min(data[i : i + 3]) > 60)


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium (scripts/install.sh --test)")
def test_emoji_and_chinese_render_as_glyphs(tmp_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page()
            page.set_content(PAGE)
            shots = {name: page.locator(f"#{name}").screenshot() for name in ("up", "down", "box", "zh", "zh-box")}
            out = Path(os.environ.get("SLM_SCREENSHOTS", tmp_path))
            out.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(out / "fonts.png"))
        finally:
            browser.close()
    assert _colourful(shots["up"]) > 50 and _colourful(shots["down"]) > 50  # colour emoji, not boxes
    assert _colourful(shots["box"]) == 0
    assert shots["zh"] != shots["zh-box"]  # Chinese characters are not the missing-glyph box
