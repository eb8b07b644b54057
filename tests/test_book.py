"""The book: the whole book in the smoke profile (pages, figures, report, appendix), and the runner's
caching and failure behaviour on the two-chapter fixture book."""
from __future__ import annotations

import html as htmllib
import json
import re
from pathlib import Path

import pytest

from conftest import ROOT, runner
from oversmoothing import book

pytestmark = pytest.mark.slow


def _imgs(page: Path) -> list[Path]:
    srcs = re.findall(r'<img[^>]*\ssrc="([^"]+)"', page.read_text())
    return [(page.parent / s).resolve() for s in srcs if not s.startswith(("http:", "https:", "data:"))]


def _text(s: str) -> str:
    return htmllib.unescape(re.sub(r"<[^>]+>", " ", s))


# ---- the whole book, smoke profile (one build per session) ----------------------------------

def test_whole_book_pages_and_figures(smoke_book):
    html = smoke_book["html"]
    assert (html / "index.html").is_file()
    for page in ("intro", "report", "parameters", "references"):
        assert (html / "book" / f"{page}.html").is_file(), page
    for ch in book.chapters(ROOT):
        page = html / (ch.entry + ".html")
        assert page.is_file(), f"no page for chapter {ch.stem}"
        imgs = _imgs(page)
        assert imgs, f"chapter {ch.stem} shows no figure"
        missing = [p for p in imgs if not p.is_file()]
        assert not missing, f"chapter {ch.stem}: image files missing: {missing}"
        text = page.read_text()
        assert "tag_injected-parameters" in text and "Injected by the runner (profile smoke" in _text(text)
        claims = json.loads((smoke_book["site"] / (ch.entry + ".claims.json")).read_text())["claims"]
        tables = [_text(t) for t in re.findall(r"<table.*?</table>", text, re.S)]
        for c in claims:   # the chapter's own claims table is rendered as a table
            assert any(c["id"] in t and c["verdict"] in t for t in tables), f"{ch.stem}: claims table of {c['id']}"


def test_report_lists_every_claim(smoke_book):
    report = (smoke_book["html"] / "book" / "report.html").read_text()
    folded = re.search(r"<details[^>]*claims-report.*?</details>", report, re.S)
    assert folded, "the full claims table is not folded in a dropdown"
    rows = [_text(r) for r in re.findall(r"<tr[^>]*>(.*?)</tr>", folded.group(0), re.S)]
    for ch in book.chapters(ROOT):
        path = smoke_book["site"] / (ch.entry + ".claims.json")
        assert path.is_file(), f"chapter {ch.stem} wrote no claims JSON"
        data = json.loads(path.read_text())
        assert data["provenance"].get("profile") == "smoke"
        for c in data["claims"]:
            hits = [r for r in rows if re.search(rf"\b{re.escape(c['id'])}\b", r) and ch.stem in r]
            assert hits, f"claim {c['id']} of {ch.stem} missing from the report"
            assert c["verdict"] in hits[0] and "smoke" in hits[0]


def test_report_opens_with_the_verdict_matrix_and_the_intro_with_the_summary(smoke_book):
    html = smoke_book["html"] / "book"
    report = (html / "report.html").read_text()
    matrix = re.search(r'<table class="verdict-matrix">.*?</table>', report, re.S)
    assert matrix and matrix.start() < report.index("<details"), "no verdict matrix above the full table"
    claims = [c for ch in book.chapters(ROOT)
              for c in json.loads((smoke_book["site"] / (ch.entry + ".claims.json")).read_text())["claims"]]
    rows = re.findall(r'<tr id="([^"]+)">(.*?)</tr>', matrix.group(0), re.S)
    assert len(rows) == len(claims)
    for rid, row in rows:   # smoke judges nothing: grey badges; every link lands on a chapter's section
        assert "verdict-not-judged headline" in row, rid
        href = re.search(r'<a href="([^"#]+)(?:#([^"]+))?"', row)
        target = (html / href.group(1)).read_text()
        assert href.group(2) is None or f'id="{href.group(2)}"' in target, f"{rid}: no anchor #{href.group(2)}"
    intro = (html / "intro.html").read_text()
    summary = _text(intro[: intro.index("Why are deep graph neural networks")])
    assert "What reproduced" in summary and "The claims were not judged in this build (profile smoke" in summary
    links = re.findall(r'<a class="verdict verdict-not-judged" href="report.html#([^"]+)"', intro)
    assert links == [rid for rid, _ in rows]


def test_parameters_appendix_and_offline_math(smoke_book):
    text = _text((smoke_book["html"] / "book" / "parameters.html").read_text())
    for ch in book.chapters(ROOT):
        for p in book.parse_parameters(ch.path).values():
            assert p.name in text, f"{ch.stem}.{p.name} missing from the appendix"
    intro = (smoke_book["html"] / "book" / "intro.html").read_text()
    src = re.search(r'<script[^>]*src="([^"]*mathjax[^"]*)"', intro).group(1)
    assert not src.startswith("http"), f"MathJax loaded from the network: {src}"
    assert (smoke_book["html"] / "book" / src).resolve().is_file()


# ---- the runner on the fixture book ------------------------------------------------------------

def test_build_caches_unchanged_chapters_and_reruns_on_src_change(minibook):
    kw = dict(profile="smoke", chapters_=["01_ok"], progress=False)
    first = book.build(minibook, **kw)
    assert first.executed == ["01_ok"]
    html = minibook / "_build" / "html"
    assert (html / "book" / "01_ok.html").is_file() and _imgs(html / "book" / "01_ok.html")
    assert "<table" in (html / "book" / "01_ok.html").read_text()   # the claims table (Markdown output)
    report = _text((html / "book" / "report.html").read_text())
    assert "C1" in report and "C13" in report and "not judged" in report
    site_nb = minibook / "_staging" / "smoke" / "site" / "book" / "01_ok.ipynb"
    # the profile's overrides were injected, in a labelled cell; the source stayed output-free
    injected = [c for c in json.loads(site_nb.read_text())["cells"]
                if "injected-parameters" in c["metadata"].get("tags", [])]
    assert "Injected by the runner" in "".join(injected[0]["source"]) and "n = 2" in "".join(injected[0]["source"])
    assert all(not c.get("outputs") for c in json.loads((minibook / "book" / "01_ok.ipynb").read_text())["cells"])

    second = book.build(minibook, **kw)
    assert second.executed == [] and second.cached == ["01_ok"]

    # a static asset changed with no page changed: it must still reach the HTML (no stale CSS)
    css = minibook / "book" / "_static" / "mini.css"
    css.write_text(css.read_text() + "/* marker-7f3a */\n")
    assert book.build(minibook, **kw).executed == []
    assert "marker-7f3a" in (html / "_static" / "mini.css").read_text()

    with open(minibook / "src" / "minilib.py", "a") as f:
        f.write("# a comment in the library\n")      # comments change no result: nothing re-runs
    assert book.build(minibook, html=False, **kw).executed == []
    with open(minibook / "src" / "minilib.py", "a") as f:
        f.write("SCALE = 2\n")                        # code does
    third = book.build(minibook, html=False, **kw)
    assert third.executed == ["01_ok"]
    assert book.build(minibook, html=False, force=True, **kw).executed == ["01_ok"]


def test_raising_chapter_fails_the_build_naming_it(minibook):
    proc = runner("--root", minibook, "build", "--profile", "smoke", "--no-progress")
    assert proc.returncode != 0
    assert "chapter 02_raises failed in cell 3" in proc.stderr
    assert "this chapter is broken on purpose" in proc.stderr
    site = minibook / "_staging" / "smoke" / "site" / "book"
    assert not (site / "02_raises.ipynb").exists(), "half-written executed notebook left behind"
    assert (site / "01_ok.ipynb").is_file()          # the chapter that worked is kept (and cached)
    assert not list((minibook / "_staging" / "smoke" / "tmp").iterdir())
    assert not (minibook / "_build").exists()         # no HTML from a failed build


@pytest.mark.parametrize("args, message", [
    (["--profile", "nope"], "unknown profile 'nope'"),
    (["--profile", "typo"], "unknown parameter 'exponent'"),
    (["--chapters", "07"], "unknown chapter '07'"),
])
def test_bad_build_requests_fail_before_running(minibook, args, message):
    proc = runner("--root", minibook, "build", *args, "--no-progress")
    assert proc.returncode == 2 and message in proc.stderr
    assert not (minibook / "_staging").exists()


def test_a_sphinx_warning_fails_the_build(minibook):
    intro = minibook / "book" / "intro.md"
    intro.write_text(intro.read_text() + "\nSee {doc}`no_such_page`.\n")
    proc = runner("--root", minibook, "build", "--profile", "smoke", "--chapters", "01_ok", "--no-progress")
    assert proc.returncode == 1
    assert "jupyter-book build failed" in proc.stderr and "no_such_page" in proc.stderr


def test_every_glued_number_in_the_prose_shows_this_runs_value(smoke_book):
    """The numbers bound to the run ({glue:text}`key:fmt`) are resolved on every page: the executed notebook
    recorded every key its prose uses, and the page shows each value in its format (myst-nb drops a missing
    key silently from the page, with only a warning)."""
    import math

    from test_project import glue_roles

    for ch in book.chapters(ROOT):
        nb = json.loads((smoke_book["site"] / (ch.entry + ".ipynb")).read_text())
        recorded = {o["metadata"]["scrapbook"]["name"]: o["data"] for c in nb["cells"] for o in c.get("outputs", [])
                    if "scrapbook" in o.get("metadata", {})}
        roles = glue_roles(nb["cells"])
        missing = sorted({k for k, _ in roles} - set(recorded))
        assert not missing, f"{ch.stem}: glue keys not recorded by the run: {missing}"
        text = re.sub(r"\s+", " ", _text((smoke_book["html"] / (ch.entry + ".html")).read_text()))
        assert "{glue" not in text and "glue:text" not in text, f"{ch.stem}: an unresolved glue role"
        for key, spec in roles:
            plain = next(v for m, v in recorded[key].items() if m.endswith("text/plain"))
            try:
                value = float(plain)
            except ValueError:
                continue
            value = int(value) if plain.lstrip("-").isdigit() else value
            shown = format(value, spec) if spec else plain
            assert math.isnan(value) or shown in text, f"{ch.stem}: {key} = {shown} is not on the page"
