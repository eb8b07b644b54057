"""The pages the runner generates at build time: the parameters appendix, the reproduction report and
the summary of verdicts the introduction includes."""
from __future__ import annotations

import html
import json
import re
from pathlib import Path
from typing import NamedTuple

from ..report import md_cell  # the claims format shared with the chapters (imports no science)
from .parameters import parse_parameters
from .toc import Chapter

#: files the runner writes at build time (the source holds a placeholder): two toc pages, and the summary
#: of verdicts that book/intro.md includes
GENERATED = {"book/parameters": "parameters", "book/report": "report", "book/_summary": "summary"}
#: the claims of DESIGN.md; the report says which of them no chapter of the build tested
DESIGN_CLAIMS = tuple(f"C{i}" for i in range(1, 14))
#: the open questions of DESIGN.md (chapter 09): answered "holds" / "partly holds" / "does not hold"
DESIGN_QUESTIONS = tuple(f"Q{i}" for i in range(1, 6))
#: the few words the verdict matrix names each claim by
CLAIM_NAMES = {"C1": "forward decay", "C2": "backward decay", "C3": "middle-layer peak", "C4": "deep GNN trapped",
               "C5": "stationary point", "C6": "loss near chance", "C7": "larger s helps",
               "C8": "gradients oversmooth", "C9": "residual expansion", "C10": "Lipschitz norm trains deep",
               "C10a": "Lipschitz norm, some c", "C10b": "Lipschitz norm, c = 4",
               "C11": "gradient similarity predicts", "C12": "plain GCN vs depth", "C13": "spectral gap sets speed",
               "Q1": "weights stay bounded", "Q2": "homophily and expansion", "Q3": "other normalisations",
               "Q4": "backward smoothing beyond GCNs", "Q5": "the trap on real graphs"}


def _esc(v) -> str:
    return md_cell(v)


def _fmt(v) -> str:
    return f"`{v!r}`" if not isinstance(v, str) else f'`"{v}"`'


def parameters_page(root: Path, chs: list[Chapter], profiles: dict) -> str:
    others = [p for p in profiles if p != "default"]
    lines = ["# Appendix: chapter parameters", "",
             "Every chapter starts with a cell tagged `parameters`. This page is generated from those cells",
             "each time the book is built, so it cannot drift from the notebooks. The *default* column is the",
             "`default` profile (a laptop CPU, claims judged); the other columns are the overrides of",
             "`book/profiles.yml` (an empty cell: the default is kept). Change a value with",
             "`python -m oversmoothing run CHAPTER -p name=value` or `papermill ... -p name value`.", ""]
    for ch in chs:
        params = parse_parameters(ch.path)
        lines += [f"## {ch.title}", "", f"Source: `{ch.entry}.ipynb`", ""]
        head = ["parameter", "type", "default", *others, "meaning"]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for p in params.values():
            ov = [(_fmt(profiles[o][ch.stem][p.name]) if p.name in (profiles[o].get(ch.stem) or {}) else "")
                  for o in others]
            lines.append("| " + " | ".join([f"`{p.name}`", p.type, _esc(_fmt(p.default)), *map(_esc, ov),
                                            _esc(p.comment)]) + " |")
        lines.append("")
    if not chs:
        lines.append("No chapter in this build.")
    return "\n".join(lines) + "\n"


def _claim_order(cid: str):
    """C1 < C2 < ... < C13 < Q1 < ... < Q5 < anything else."""
    m = re.match(r"([CQ])(\d+)", str(cid))
    if not m:
        return (10**6, str(cid))
    return ((0 if m.group(1) == "C" else 1000) + int(m.group(2)), str(cid))


def is_question(row) -> bool:
    """A row of an open question (Q1-Q5, answered by the book) rather than of a paper's claim."""
    return str(row.claim.get("id", "")).startswith("Q")


class Row(NamedTuple):
    """One row of the report: a claim as one chapter tested it."""
    claim: dict
    chapter: Chapter
    provenance: dict


def claim_rows(site: Path, chs: list[Chapter]) -> tuple[list[Row], list[Chapter]]:
    """The claims every chapter of ``chs`` wrote into ``site`` (by claim number, then chapter order), and
    the chapters that wrote no claims table."""
    rows, missing = [], []
    for order, ch in enumerate(chs):
        path = site / (ch.entry + ".claims.json")
        if not path.is_file():
            missing.append(ch)
            continue
        data = json.loads(path.read_text())
        rows += [(_claim_order(c.get("id")), order, Row(c, ch, data.get("provenance", {})))
                 for c in data.get("claims", [])]
    rows.sort(key=lambda r: r[:2])
    return [r[2] for r in rows], missing


def verdict_counts(rows: list[Row]) -> dict[str, int]:
    """How many rows have each verdict: reproduced, partly, not reproduced first, then the others."""
    counts: dict[str, int] = {}
    for r in rows:
        counts[r.claim.get("verdict", "?")] = counts.get(r.claim.get("verdict", "?"), 0) + 1
    first = ("reproduced", "partly reproduced", "not reproduced", "holds", "partly holds", "does not hold")
    return dict(sorted(counts.items(), key=lambda kv: (first.index(kv[0]) if kv[0] in first else 9, kv[0])))


# ---- the verdict matrix: claims x readings, one coloured badge and one key number per cell -------------

#: the badge of each verdict: CSS class (book/_static/custom.css) and a mark that does not rely on colour;
#: every other verdict ("not judged", "not judged: non-finite") is grey
BADGES = {"reproduced": ("verdict-reproduced", "✓"), "partly reproduced": ("verdict-partly", "◐"),
          "not reproduced": ("verdict-not-reproduced", "✗"),
          "holds": ("verdict-reproduced", "✓"), "partly holds": ("verdict-partly", "◐"),
          "does not hold": ("verdict-not-reproduced", "✗")}
NOT_JUDGED = ("verdict-not-judged", "–")

_NUMBER = r"(?<![\w.])-?\d+(?:\.\d+)?(?:e[-+]?\d+)?(?:\.\.-?\d+(?:\.\d+)?(?:e[-+]?\d+)?)?(?![\w/])"
#: a count of seeds or runs: "3/3 seeds", "3 of 3 seeds", "trapped 9/9", "not trapped in 6/6"
_COUNT = re.compile(r"(?:(?P<label>[A-Za-z][\w-]{3,}(?: in| on)?) )?(?<![\w./])(?P<value>\d+)(?:/| of )(?P<of>\d+)"
                    r"(?![\w/])(?: (?P<unit>[A-Za-z]+))?")
#: a quantity: "lambda=0.0101", "gradient 2.2e-10", "r = 0.055..0.057", or a comparison "-0.64 vs -0.57"
_QUANTITY = re.compile(rf"(?:(?P<label>[A-Za-z_][\w*/%'-]*)\s*(?P<sep>[=:]?)\s*)?(?P<value>{_NUMBER})"
                       rf"(?P<versus> vs {_NUMBER})?(?: (?P<unit>[A-Za-z]+))?")
_NOT_A_UNIT = {"of", "by", "in", "on", "at", "and", "or", "over", "for", "with", "vs", "to", "x"}


def badge(verdict: str) -> tuple[str, str]:
    return BADGES.get(verdict, NOT_JUDGED)


def key_number(measured: str, width: int = 16) -> str:
    """One short number from a claim's ``measured`` text, for a cell of the verdict matrix: the first count
    of seeds or runs ("3/3 seeds", "trapped 9/9") where there is one, else the first quantity
    ("lambda=0.0101", "gradient 2.2e-10") after the first ": " (the results, after the setting), else the
    first quantity at all. Longer than ``width``: the number alone."""
    if (m := _COUNT.search(measured)):
        value = f"{m['value']}/{m['of']}"
        label, unit = m["label"] and m["label"] + " ", m["unit"]
    else:
        found = list(_QUANTITY.finditer(measured))
        results = measured.find(": ")
        m = next((q for q in found if results >= 0 and q.start("value") > results), found[0] if found else None)
        if m is None:
            return ""
        value, unit = m["value"] + (m["versus"] or ""), m["unit"]
        label = not m["versus"] and m["label"] and m["label"] + (m["sep"] or " ")   # (the label of A vs B is A's)
    unit = unit if unit and unit not in _NOT_A_UNIT else None
    text = f"{value} {unit}" if unit else f"{label}{value}" if label else value
    return text if len(text) <= width else value if len(value) <= width else value[: width - 1] + "…"


def claim_anchor(ch: Chapter) -> str:
    """The link to the chapter's claims section (``NN_name.html#claims``), or to the chapter page when its
    notebook has no "Claims" heading."""
    try:
        cells = json.loads(ch.path.read_text()).get("cells", [])
    except (OSError, ValueError):
        cells = []
    text = "\n".join("".join(c.get("source", "")) for c in cells if c.get("cell_type") == "markdown")
    has = re.search(r"^#{1,6}\s+Claims\s*$", text, re.M)
    return Path(ch.entry).name + ".html" + ("#claims" if has else "")


def row_ids(rows: list[Row]) -> list[str]:
    """An HTML id per row (``C4-04_stationary_traps``), unique on the page: the summary links to them."""
    ids, seen = [], {}
    for r in rows:
        base = f"{r.claim.get('id', '?')}-{r.chapter.stem}"
        seen[base] = seen.get(base, 0) + 1
        ids.append(base if seen[base] == 1 else f"{base}-{seen[base]}")
    return ids


def key_of(entry: dict) -> str:
    """The key number of a claim or reading of the claims JSON: its own ``key`` where the chapter gave one,
    else the number :func:`key_number` guesses from its ``measured`` text."""
    return str(entry.get("key") or "").strip() or key_number(entry.get("measured", "") or "")


def _cell(verdict: str, measured: str, tag: str = "td", extra: str = "", key: str = "") -> str:
    cls, mark = badge(verdict)
    tip = html.escape(f"{verdict}: {measured}" if measured else verdict)
    return (f'<{tag} class="verdict {cls}{extra}" title="{tip}"><span class="verdict-mark">{mark}</span> '
            f'{html.escape(key or key_number(measured))}</{tag}>')


def reading_names(rows: list[Row]) -> list[str]:
    names: list[str] = []
    for r in rows:
        names += [x.get("name") for x in r.claim.get("readings") or [] if x.get("name") not in names]
    return names


def verdict_matrix(rows: list[Row]) -> list[str]:
    """MyST lines of the verdict matrix (raw HTML): one row per claim row of the report (claim id, a few
    words, a link to the chapter's claims section), one column for the headline verdict and one per
    reading name; a coloured badge and one key number per cell (the chapter's ``key``, else a guess from
    ``measured``; the full measured text as its tooltip);
    an empty cell where the claim was not judged under that reading."""
    if not rows:
        return []
    names = reading_names(rows)
    head = ['<th class="claim">claim</th>', '<th class="headline"><span>headline</span></th>',
            *(f'<th class="reading"><span>{html.escape(n)}</span></th>' for n in names)]
    out = ['<div class="verdict-matrix-wrap full-width"><table class="verdict-matrix">',
           "<thead><tr>" + "".join(head) + "</tr></thead>", "<tbody>"]
    for r, rid in zip(rows, row_ids(rows)):
        cid = str(r.claim.get("id", "?"))
        ctx = re.match(r"\s*\[([^\]]+)\]", r.claim.get("claim", ""))
        name = CLAIM_NAMES.get(cid) or " ".join(r.claim.get("claim", "").split()[:4])
        where = r.chapter.stem + (f" · {ctx.group(1)}" if ctx else "")
        by_name = {x.get("name"): x for x in r.claim.get("readings") or []}
        cells = [f'<th scope="row" class="claim" title="{html.escape(r.claim.get("claim", ""))}">'
                 f'<a href="{html.escape(claim_anchor(r.chapter))}"><b>{html.escape(cid)}</b> {html.escape(name)}</a>'
                 f'<span class="where">{html.escape(where)}</span></th>',
                 _cell(r.claim.get("verdict", ""), r.claim.get("measured", ""), extra=" headline",
                       key=key_of(r.claim))]
        cells += [_cell(by_name[n].get("verdict", ""), by_name[n].get("measured", ""), key=key_of(by_name[n]))
                  if n in by_name
                  else '<td class="empty"></td>' for n in names]
        out.append(f'<tr id="{html.escape(rid)}">' + "".join(cells) + "</tr>")
    legend = " ".join(f'<span class="verdict {cls}"><span class="verdict-mark">{mark}</span> {v}</span>'
                      for v, (cls, mark) in [*BADGES.items(), ("not judged", NOT_JUDGED)])
    out += ["</tbody></table></div>", f'<p class="verdict-legend">{legend}; an empty cell: not judged under '
            "that reading. Hover a cell for the full measurement.</p>"]
    return ["```{raw} html", *out, "```", ""]


# ---- the pages -------------------------------------------------------------------------------------------

def report_page(site: Path, chs: list[Chapter], earlier: list[Chapter] = ()) -> str:
    """The claims of every chapter in ``chs``; ``earlier`` = those shown from an earlier build whose
    notebook, parameters or library changed since (said on the page)."""
    rows, missing = claim_rows(site, chs)
    counts = verdict_counts(rows)
    lines = ["# Reproduction report", "",
             "One row per claim tested by a chapter (numbered as in the design: C1-C13; Q1-Q5 are the open",
             "questions of chapter 09, answered *holds* / *partly holds* / *does not hold*), generated from the",
             "claims tables the chapters wrote when they were executed for this build. A claim tested by two",
             "chapters has two rows. *Not judged* means the chapter ran with `judge_claims = False` (the",
             "`smoke` profile runs tiny sizes and judges nothing).", ""]
    if counts:
        lines += ["Verdicts: " + ", ".join(f"**{k}**: {v}" for k, v in counts.items()) + ".", ""]
    if rows:
        lines += ["## At a glance", "",
                  "Where a paper leaves a choice open (feature centring, activation, initialisation, training",
                  "budget, ...), the chapters judge the claim under each reasonable reading. *headline* is the",
                  "paper's own setting where it states one, and the reading the chapter argues for where it does",
                  "not. A claim links to the chapter section that tests it.", "",
                  *verdict_matrix(rows)]
    head = ["claim", "paper says", "chapter", "measured", "criterion", "verdict", "profile", "device"]
    lines += ["::::{dropdown} Every claim in full: what the paper says, the measurement, the criterion",
              ":class-container: claims-report", "", ":::{div} full-width", "",
              "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        c, prov = r.claim, r.provenance
        link = f"[{r.chapter.stem}]({Path(r.chapter.entry).name}.ipynb)"
        lines.append("| " + " | ".join([_esc(c.get("id", "?")), _esc(c.get("claim", "")), link,
                                        _esc(c.get("measured", "")), _esc(c.get("criterion", "")),
                                        f"**{_esc(c.get('verdict', ''))}**", _esc(prov.get("profile", "")),
                                        _esc(prov.get("device", ""))]) + " |")
    lines += ["", ":::", "::::", ""]
    if not rows:
        lines += ["No claims were recorded in this build.", ""]
    tested = {re.sub(r"(?<=\d)[a-z]$", "", str(r.claim.get("id"))) for r in rows}   # C10a, C10b test C10
    untested = [c for c in DESIGN_CLAIMS if c not in tested]
    if untested:
        lines += ["Claims of the design that no chapter of this build tested: " + ", ".join(untested) + ".", ""]
    open_ = [q for q in DESIGN_QUESTIONS if q not in tested]
    if open_ and len(open_) < len(DESIGN_QUESTIONS):
        lines += ["Open questions of the design that no chapter of this build answered: " + ", ".join(open_) + ".", ""]
    if missing:
        lines += ["Chapters that recorded no claims table: " + ", ".join(f"`{c.stem}`" for c in missing) + ".", ""]
    if earlier:
        lines += ["Shown from an earlier build, although their notebook, parameters or library changed since "
                  "(rebuild them to update): " + ", ".join(f"`{c.stem}`" for c in earlier) + ".", ""]
    return "\n".join(lines)


def _badge_link(r: Row, rid: str) -> str:
    """The claim's badge in the summary, linking to its row of the report's matrix."""
    cid, verdict = str(r.claim.get("id", "?")), r.claim.get("verdict", "")
    cls, mark = badge(verdict)
    title = f"{cid} {CLAIM_NAMES.get(cid, '')} ({r.chapter.stem}): {verdict}".replace("  ", " ")
    return (f'<a class="verdict {cls}" href="report.html#{html.escape(rid)}" title="{html.escape(title)}">'
            f'<span class="verdict-mark">{mark}</span> {html.escape(cid)}</a>')


def summary_page(site: Path, chs: list[Chapter]) -> str:
    """``book/_summary.md``, which the introduction includes: what reproduced, in a few lines (the counts per
    verdict and one badge per claim row, linking to its row of the report)."""
    rows, _ = claim_rows(site, chs)
    judged = [r for r in rows if badge(r.claim.get("verdict", "")) != NOT_JUDGED]
    profiles = sorted({str(r.provenance.get("profile", "?")) for r in rows})
    if not rows:
        text = "No chapter of this build recorded its claims; the {doc}`report` lists what is missing."
    elif not judged:
        text = (f"The claims were not judged in this build (profile {', '.join(profiles)}: the chapters ran with "
                "`judge_claims = False`). Build the `default` profile to judge them; the {doc}`report` lists the "
                "claims tested.")
    else:
        claims_, questions = [r for r in rows if not is_question(r)], [r for r in rows if is_question(r)]
        counts = ", ".join(f"**{k}**: {v}" for k, v in verdict_counts(claims_).items())
        text = (f"{len(claims_)} claim rows in this build (profile {', '.join(profiles)}): {counts}. "
                "The {doc}`report` has every verdict under every reading, with the numbers.")
        if questions:
            answers = ", ".join(f"**{k}**: {v}" for k, v in verdict_counts(questions).items())
            text += (f"\n\n**Open questions** beyond the papers (chapter 09), {len(questions)} answered: {answers}.")
    strip = " ".join(_badge_link(r, rid) for r, rid in zip(rows, row_ids(rows)))
    lines = [":::{admonition} What reproduced", ":class: verdict-summary", "", text, ""]
    if rows:
        lines += ["```{raw} html", f'<p class="verdict-strip">{strip}</p>', "```", ""]
    return "\n".join(lines + [":::", ""])
