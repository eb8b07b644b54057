"""Headless Chromium renders the built book: math typeset by the offline MathJax, images loaded."""
from __future__ import annotations

import html as htmllib
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import ROOT
from oversmoothing import book

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars"]
# appended to a copy of the page: after load, record for every <img> whether it decoded
PROBE = """<script>window.addEventListener('load', () => setTimeout(() => {
  const r = [...document.images].map(i => (i.complete && i.naturalWidth > 0 ? 'ok ' : 'BROKEN ') + i.getAttribute('src'));
  document.documentElement.setAttribute('data-images', r.join('|') || 'none');
}, 500));</script>"""


def _chromium(*args, tmp: Path) -> str:
    cmd = [CHROMIUM, *FLAGS, f"--user-data-dir={tmp / 'profile'}", "--virtual-time-budget=15000", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120).stdout


def _check_page(page: Path, tmp: Path, png: Path):
    probe = page.with_name(page.stem + ".__probe.html")     # same folder: relative links still work
    probe.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
    dom = _chromium("--dump-dom", probe.as_uri(), tmp=tmp)
    probe.unlink()
    assert "<body" in dom, f"chromium rendered nothing for {page.name}"
    body = re.sub(r"<(script|style|mjx-assistive-mml)\b.*?</\1>", " ", dom, flags=re.S)
    text = htmllib.unescape(re.sub(r"<[^>]+>", " ", body))
    assert "\\(" not in text and "\\[" not in text, f"{page.name}: raw LaTeX left visible (MathJax did not run)"
    if 'class="math' in page.read_text():
        assert "<mjx-container" in dom, f"{page.name}: math not typeset"
    images = re.search(r'data-images="([^"]*)"', dom)
    assert images, f"{page.name}: the image probe did not run"
    assert "BROKEN" not in images.group(1), f"{page.name}: images failed to load: {images.group(1)}"
    _chromium(f"--screenshot={png}", "--window-size=1280,1800", page.as_uri(), tmp=tmp)
    assert png.is_file() and png.stat().st_size > 10_000, f"no screenshot of {page.name}"
    return images.group(1)


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (make test installs it)")
def test_intro_and_a_chapter_render_in_chromium(smoke_book, tmp_path):
    html = smoke_book["html"]
    _check_page(html / "book" / "intro.html", tmp_path, tmp_path / "intro.png")
    chs = book.chapters(ROOT)
    page = html / (chs[0].entry + ".html") if chs else html / "book" / "report.html"
    images = _check_page(page, tmp_path, tmp_path / "chapter.png")
    if chs:
        assert "ok ../_images/" in images, f"no figure loaded on {page.name}: {images}"


# appended to a copy of the report: after load, record how the verdict matrix and the folded table render
REPORT_PROBE = """<script>window.addEventListener('load', () => setTimeout(() => {
  const cell = document.querySelector('table.verdict-matrix td.verdict');
  const details = document.querySelector('details.claims-report');
  const full = details && details.querySelector('table');
  document.documentElement.setAttribute('data-report', [
    'badge=' + (cell ? getComputedStyle(cell).backgroundColor : 'none'),
    'folded=' + (details ? !details.open : 'none'),
    'table-hidden=' + (full ? !full.checkVisibility() : 'none')].join(' '));
}, 500));</script>"""


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (make test installs it)")
def test_report_shows_the_verdict_matrix_in_colour_and_the_full_table_folded(smoke_book, tmp_path):
    page = smoke_book["html"] / "book" / "report.html"
    _check_page(page, tmp_path, tmp_path / "report.png")
    probe = page.with_name("report.__probe.html")
    probe.write_text(page.read_text().replace("</body>", REPORT_PROBE + "</body>"))
    dom = _chromium("--dump-dom", probe.as_uri(), tmp=tmp_path)
    probe.unlink()
    seen = re.search(r'data-report="([^"]*)"', dom)
    assert seen, "the report probe did not run"
    # smoke judges nothing: the badges are the grey of custom.css (the stylesheet reached the page)
    assert seen.group(1) == "badge=rgb(229, 231, 235) folded=true table-hidden=true", seen.group(1)


# ---- the chapters' pages as a reader sees them (issue 12) -------------------------------------------

MAX_VISIBLE_LINES = 12   # a code cell shown unfolded; longer ones are plumbing and hidden (Show code)
MIN_FIGURE_PX = 500      # a figure narrower than this wastes the column and shrinks its fonts
# The parameters cell and the cell papermill injects are the run's settings, listed at the top of every
# chapter on purpose (see the introduction): they are exempt from the limit.
EXEMPT = ("tag_parameters", "tag_injected-parameters")
# appended to a copy of a chapter page: measures, after load, what the tests below check
LAYOUT_PROBE = """<script>window.addEventListener('load', () => setTimeout(() => {
  const art = document.querySelector('article.bd-article');
  const cs = getComputedStyle(art);
  const col = art.clientWidth - parseFloat(cs.paddingLeft) - parseFloat(cs.paddingRight);
  const figs = [...document.querySelectorAll('div.cell_output img')].map(i => {
    const f = i.closest('figure'), cap = f && f.querySelector('figcaption');
    return {src: i.getAttribute('src'), alt: i.getAttribute('alt') || '', natural: i.naturalWidth,
            shown: i.getBoundingClientRect().width, caption: cap ? cap.innerText.trim() : ''};
  });
  // shown unfolded: not inside a closed <details> (hide-input's "Show code") and laid out at all
  const shown = c => !c.closest('details:not([open])') && c.offsetParent !== null;
  const code = [...document.querySelectorAll('div.cell_input')].filter(shown).map(c => {
    const cell = c.closest('div.cell');
    const pre = c.querySelector('pre');
    return {lines: pre ? pre.innerText.replace(/\\n+$/, '').split('\\n').length : 0, cls: cell ? cell.className : '',
            first: pre ? pre.innerText.split('\\n')[0].slice(0, 80) : ''};
  });
  document.documentElement.setAttribute('data-layout', JSON.stringify({col, figs, code}));
}, 500));</script>"""


def _layout(page: Path, tmp: Path) -> dict:
    import json

    probe = page.with_name(page.stem + ".__layout.html")
    probe.write_text(page.read_text().replace("</body>", LAYOUT_PROBE + "</body>"))
    try:
        dom = _chromium("--window-size=1280,1600", "--dump-dom", probe.as_uri(), tmp=tmp)
    finally:
        probe.unlink()
    found = re.search(r'data-layout="([^"]*)"', dom)
    assert found, f"{page.name}: the layout probe did not run"
    return json.loads(htmllib.unescape(found.group(1)))


def _looks_generated(alt: str) -> bool:
    """myst-nb's default alt text is the image's path, a content hash."""
    return bool(re.search(r"[0-9a-f]{16,}|\.(png|jpe?g|svg)$", alt)) or len(alt.strip()) < 15


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (make test installs it)")
def test_chapter_figures_captions_widths_and_short_visible_code(smoke_book, tmp_path):
    """Every chapter at 1280 px: each figure sits in a <figure> with a numbered caption and real alt text,
    is no wider than the text column (neither as shown nor at its own pixel size: a shrunk PNG shrinks
    its fonts) and at least MIN_FIGURE_PX wide, and no code cell shown unfolded is longer than MAX_VISIBLE_LINES lines."""
    problems = []
    for ch in book.chapters(ROOT):
        page = smoke_book["html"] / (ch.entry + ".html")
        lay = _layout(page, tmp_path)
        col = lay["col"]
        assert col > 300, f"{page.name}: no text column measured ({col})"
        assert lay["figs"], f"{page.name}: no figure found"
        for k, f in enumerate(lay["figs"], 1):
            where = f"{ch.stem} figure {k} ({f['src'].rsplit('/', 1)[-1][:12]})"
            if not re.match(r"Fig\. ?\d+", f["caption"]) or len(f["caption"]) < 20:
                problems.append(f"{where}: no numbered caption ({f['caption'][:40]!r})")
            if _looks_generated(f["alt"]):
                problems.append(f"{where}: alt text is {f['alt'][:40]!r}, not a description")
            if f["shown"] > col + 0.5 or f["natural"] > col:
                problems.append(f"{where}: {f['natural']} px PNG shown {f['shown']:.0f} px, column {col:.0f} px")
            if f["shown"] < MIN_FIGURE_PX:
                problems.append(f"{where}: shown {f['shown']:.0f} px wide, less than {MIN_FIGURE_PX} px")
        for c in lay["code"]:
            if c["lines"] > MAX_VISIBLE_LINES and not any(t in c["cls"].split() for t in EXEMPT):
                problems.append(f"{ch.stem}: visible code cell of {c['lines']} lines: {c['first']!r}")
    assert not problems, "\n".join(problems)
