"""The pages the runner generates at build time: the parameters appendix and the reproduction report."""
from __future__ import annotations

import json
import re
from pathlib import Path

from ..report import md_cell  # the claims format shared with the chapters (imports no science)
from .parameters import parse_parameters
from .toc import Chapter

#: toc entries whose page the runner writes at build time (the source holds a placeholder)
GENERATED = {"book/parameters": "parameters", "book/report": "report"}
#: the claims of DESIGN.md; the report says which of them no chapter of the build tested
DESIGN_CLAIMS = tuple(f"C{i}" for i in range(1, 14))


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
    m = re.match(r"C(\d+)", str(cid))
    return (int(m.group(1)) if m else 10**6, str(cid))


def readings_grid(claims: list[dict], chs: list[Chapter]) -> list[str]:
    """Markdown lines of the claims x readings grid: one row per claim row of the report, one column for
    the headline verdict and one per reading name (a reading a claim was not judged under stays empty)."""
    names: list[str] = []
    for c in claims:
        for r in c.get("readings") or []:
            if r.get("name") not in names:
                names.append(r.get("name"))
    if not names:
        return []
    head = ["claim", "chapter", "headline", *names]
    out = ["## Verdicts under each reading", "",
           "Where a paper leaves a choice open (feature centring, activation, initialisation, training budget, ...),",
           "the chapters judge the claim under each reasonable reading. *headline* is the paper's own setting where",
           "it states one, and the reading the chapter argues for where it does not.", "",
           ":::{div} full-width readings-grid", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for c, ch in zip(claims, chs):
        by_name = {r.get("name"): r.get("verdict", "") for r in c.get("readings") or []}
        ctx = re.match(r"\s*\[([^\]]+)\]", c.get("claim", ""))
        label = _esc(c.get("id", "?")) + (f" ({_esc(ctx.group(1))})" if ctx else "")
        out.append("| " + " | ".join([label, f"[{ch.stem}]({Path(ch.entry).name}.ipynb)",
                                      f"**{_esc(c.get('verdict', ''))}**",
                                      *(_esc(by_name.get(n, "")) for n in names)]) + " |")
    return out + ["", ":::", ""]


def report_page(site: Path, chs: list[Chapter], earlier: list[Chapter] = ()) -> str:
    """The claims of every chapter in ``chs``; ``earlier`` = those shown from an earlier build whose
    notebook, parameters or library changed since (said on the page)."""
    rows, missing = [], []
    for order, ch in enumerate(chs):
        path = site / (ch.entry + ".claims.json")
        if not path.is_file():
            missing.append(ch)
            continue
        data = json.loads(path.read_text())
        prov = data.get("provenance", {})
        for c in data.get("claims", []):
            rows.append((_claim_order(c.get("id")), order, ch, c, prov))
    rows.sort(key=lambda r: (r[0], r[1]))
    counts: dict[str, int] = {}
    for r in rows:
        counts[r[3].get("verdict", "?")] = counts.get(r[3].get("verdict", "?"), 0) + 1
    lines = ["# Reproduction report", "",
             "One row per claim tested by a chapter (numbered as in the design: C1-C13), generated from the",
             "claims tables the chapters wrote when they were executed for this build. A claim tested by two",
             "chapters has two rows. *Not judged* means the chapter ran with `judge_claims = False` (the",
             "`smoke` profile runs tiny sizes and judges nothing).", ""]
    if counts:
        lines += ["Verdicts: " + ", ".join(f"**{k}**: {v}" for k, v in sorted(counts.items())) + ".", ""]
    head = ["claim", "paper says", "chapter", "measured", "criterion", "verdict", "profile", "device"]
    lines += [":::{div} full-width claims-report", "",
              "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for _, _, ch, c, prov in rows:
        link = f"[{ch.stem}]({Path(ch.entry).name}.ipynb)"
        lines.append("| " + " | ".join([_esc(c.get("id", "?")), _esc(c.get("claim", "")), link,
                                        _esc(c.get("measured", "")), _esc(c.get("criterion", "")),
                                        f"**{_esc(c.get('verdict', ''))}**", _esc(prov.get("profile", "")),
                                        _esc(prov.get("device", ""))]) + " |")
    lines += ["", ":::", ""]
    lines += readings_grid([r[3] for r in rows], [r[2] for r in rows])
    if not rows:
        lines += ["No claims were recorded in this build.", ""]
    untested = [c for c in DESIGN_CLAIMS if c not in {r[3].get("id") for r in rows}]
    if untested:
        lines += ["Claims of the design that no chapter of this build tested: " + ", ".join(untested) + ".", ""]
    if missing:
        lines += ["Chapters that recorded no claims table: " + ", ".join(f"`{c.stem}`" for c in missing) + ".", ""]
    if earlier:
        lines += ["Shown from an earlier build, although their notebook, parameters or library changed since "
                  "(rebuild them to update): " + ", ".join(f"`{c.stem}`" for c in earlier) + ".", ""]
    return "\n".join(lines)
