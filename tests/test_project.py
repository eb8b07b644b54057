"""Project hygiene: licence, citation, one repository URL, launch environments, workflows."""
import json
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _repo_url() -> str:
    return yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"]


def test_licence_matches_pyproject():
    assert "MIT License" in (ROOT / "LICENSE").read_text()
    assert re.search(r'^license = "MIT"', (ROOT / "pyproject.toml").read_text(), re.M)


def test_citation_cites_the_book_and_both_papers():
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0" and cff["license"] == "MIT"
    assert cff["repository-code"] == _repo_url()
    ids = {i["value"] for r in cff["references"] for i in r["identifiers"]}
    assert ids == {"arXiv:2505.16736", "arXiv:2410.04824"}


def test_the_repository_url_is_set_in_one_place():
    """Every link to the repository (README, intro, citation, the chapters' Colab cells) is _config.yml's."""
    url = _repo_url()
    files = [ROOT / "README.md", ROOT / "book" / "intro.md", ROOT / "CITATION.cff", *sorted((ROOT / "book").glob("0*.ipynb"))]
    for f in files:
        for found in re.findall(r"https://github\.com/[\w.-]+/[\w.-]+", f.read_text()):
            assert found.removesuffix(".git") == url, f"{f.name} links {found}, _config.yml says {url}"


def test_binder_installs_a_cpu_torch_and_the_tested_set():
    req = (ROOT / "binder" / "requirements.txt").read_text()
    assert re.search(r"^torch==[\d.]+\+cpu$", req, re.M) and "whl/cpu" in req
    lock_torch = re.search(r"^torch==([\d.]+)$", (ROOT / "requirements.lock").read_text(), re.M).group(1)
    assert f"torch=={lock_torch}+cpu" in req
    assert "-c requirements.lock" in (ROOT / "binder" / "postBuild").read_text()


def test_workflows_test_pull_requests_cache_the_staging_and_check_links():
    wf = {p.stem: yaml.safe_load(p.read_text()) for p in (ROOT / ".github" / "workflows").glob("*.yml")}
    on = lambda w: w.get("on", w.get(True))   # YAML 1.1 reads the key `on` as True
    assert "pull_request" in on(wf["test"]) and any(s.get("run") == "make test" for s in wf["test"]["jobs"]["test"]["steps"])
    steps = wf["pages"]["jobs"]["build"]["steps"]
    cache = next(s for s in steps if s.get("uses", "").startswith("actions/cache"))
    assert cache["with"]["path"] == "_staging/default" and all(k in cache["with"]["key"] for k in ("book/", "src/", "requirements.lock"))
    assert any(s.get("if") == "failure()" and "failed" in s["with"]["path"] for s in steps if "with" in s)
    assert "schedule" in on(wf["linkcheck"]) and "linkcheck" in str(wf["linkcheck"]["jobs"])


def test_api_appendix_documents_the_science_core():
    toc = (ROOT / "_toc.yml").read_text()
    assert "book/api" in toc
    api = (ROOT / "book" / "api.md").read_text()
    for mod in ("graphs", "datasets", "models", "signals", "measures", "training"):
        assert f".. automodule:: oversmoothing.{mod}" in api


def test_every_chapter_opens_with_the_hidden_colab_install_cell():
    """Colab opens the source notebook: its first cell installs the library (without replacing Colab's torch)
    and does nothing elsewhere; it is removed from the rendered book."""
    for nb in sorted((ROOT / "book").glob("0*.ipynb")):
        first = json.loads(nb.read_text())["cells"][0]
        src = "".join(first["source"])
        assert first["cell_type"] == "code" and "remove-cell" in first["metadata"]["tags"], nb.name
        assert 'if "google.colab" in sys.modules:' in src and f"git+{_repo_url()}" in src, nb.name
        assert "--no-deps" in src and "torch==" not in src, nb.name   # Colab's own torch is kept
        exec(compile(src, nb.name, "exec"), {})                       # outside Colab: a no-op


def test_chapters_are_valid_nbformat_with_cell_ids():
    """Every cell carries an id (nbformat >= 4.5 requires it; papermill and Colab warn or rewrite otherwise)."""
    import nbformat

    for nb in sorted((ROOT / "book").glob("0*.ipynb")):
        raw = json.loads(nb.read_text())
        assert (raw["nbformat"], raw["nbformat_minor"]) >= (4, 5), nb.name
        missing = [i for i, c in enumerate(raw["cells"]) if "id" not in c]
        assert not missing, f"{nb.name}: cells without an id: {missing}"
        nbformat.validate(nbformat.reads(nb.read_text(), as_version=4))


def _imported_modules(path: Path) -> set[str]:
    """The oversmoothing modules a file imports (absolute or relative), as dotted names below the package."""
    import ast

    pkg = path.relative_to(ROOT / "src").with_suffix("").parts[:-1]  # e.g. ("oversmoothing", "experiments")
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = list(pkg[:len(pkg) - node.level + 1]) if node.level else []
            mod = ".".join(base + ([node.module] if node.module else []))
            names.add(mod)
            names.update(f"{mod}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return {n.split(".", 1)[1] for n in names if n.startswith("oversmoothing.")}


def _top(path: Path) -> set[str]:
    """The top-level oversmoothing modules/packages a file imports (e.g. "models", "grid")."""
    return {m.split(".")[0] for m in _imported_modules(path)} - {"__version__"}


def _files(*names: str) -> list[Path]:
    """The Python files of these modules or packages of the library."""
    src = ROOT / "src" / "oversmoothing"
    out = []
    for n in names:
        out += sorted((src / n).rglob("*.py")) if (src / n).is_dir() else [src / f"{n}.py"]
    return out


CORE = {"graphs", "datasets", "models", "signals", "measures", "training", "devices", "codehash"}
PRESENTATION = {"report", "figures", "parameters"}  # claims format, house style, parameter rules
MACHINERY = {"grid", "book", "codehash", "devices", "__main__"} | PRESENTATION


def test_the_import_graph_points_one_way():
    """The science core imports only itself; the run machinery (grid/) and the runner (book/) import none of the
    science; experiments/ holds only science (the core and the run machinery, never judges, report, figures or the
    runner); graphs does not import datasets (no cycle)."""
    for f in _files(*CORE):
        assert _top(f) <= CORE, f"{f.name} imports {sorted(_top(f) - CORE)}"
        if f.parent.name == "models":
            assert "datasets" not in _top(f)
    for f in _files(*PRESENTATION):
        assert _top(f) <= PRESENTATION, f"{f.name} imports {sorted(_top(f) - PRESENTATION)}"
    for f in _files("grid", "book", "__main__"):
        assert _top(f) <= MACHINERY, f"{f.relative_to(ROOT)} imports science: {sorted(_top(f) - MACHINERY)}"
    for f in _files("experiments"):
        assert _top(f) <= CORE | {"grid", "experiments"}, f"{f.relative_to(ROOT)} imports {sorted(_top(f) - CORE - {'grid', 'experiments'})}"
    for f in _files("judges"):
        assert _top(f) <= CORE | {"experiments", "judges", "report"}, f"{f.relative_to(ROOT)} imports {sorted(_top(f))}"
    assert "datasets" not in _top(ROOT / "src" / "oversmoothing" / "graphs.py")
    assert {p.stem for p in (ROOT / "src" / "oversmoothing" / "experiments").glob("*.py")} == {
        "__init__", "smoothing", "traps", "gradients", "remedies", "questions"}
    for f in _files("grid"):
        assert len(f.read_text().splitlines()) < 300, f"{f.name} has 300 lines or more"


GLUE_ROLE = re.compile(r"\{glue(?::\w+)?\}`([^`]+)`")          # {glue:text}`key:.2f`, {glue}`key`
GLUE_CALL = re.compile(r"""\bglue\(\s*["']([^"']+)["']""")      # glue("key", value) in a code cell


def glue_roles(cells) -> list[tuple[str, str]]:
    """(key, format spec) of every glue role in the markdown cells."""
    out = []
    for c in cells:
        if c["cell_type"] == "markdown":
            for text in GLUE_ROLE.findall("".join(c["source"])):
                key, _, spec = text.partition(":")
                out.append((key, spec))
    return out


def test_every_glued_number_in_the_prose_is_glued_by_its_own_chapter():
    """A number of the run quoted in a chapter's prose ({glue:text}`key:fmt`) must be glue()d by a code cell of the
    same notebook (glue keys are page-level; a missing one renders as nothing), under the chapter's own prefix."""
    for nb in sorted((ROOT / "book").glob("0*.ipynb")):
        cells = json.loads(nb.read_text())["cells"]
        glued = {k for c in cells if c["cell_type"] == "code" for k in GLUE_CALL.findall("".join(c["source"]))}
        used = {k for k, _ in glue_roles(cells)}
        assert used <= glued, f"{nb.name}: glue roles without a glue() call: {sorted(used - glued)}"
        wrong = sorted(k for k in glued | used if not k.startswith(f"ch{nb.name[:2]}_"))
        assert not wrong, f"{nb.name}: glue keys without the chapter's prefix ch{nb.name[:2]}_: {wrong}"
        for k, spec in glue_roles(cells):
            if spec:
                format(1.5 if spec[-1] not in "d" else 1, spec)  # a valid Python format spec


def test_every_benchmark_imports_and_explains_itself():
    """The benchmarks are not run by the tests (they time things), but each must import and answer --help."""
    import subprocess
    import sys

    for bench in sorted((ROOT / "benchmarks").glob("bench_*.py")):
        proc = subprocess.run([sys.executable, str(bench), "--help"], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0 and "usage" in proc.stdout.lower(), f"{bench.name}: {proc.stderr[-800:]}"


LIBRARY_TOP = {"graphs", "datasets", "models", "signals", "measures", "training", "experiments", "judges", "grid",
               "report", "figures", "chapter", "parameters", "book", "codehash", "devices"}
CITED = re.compile(r"`((?:oversmoothing\.)?([a-z_]+)(?:\.[A-Za-z_][A-Za-z0-9_]*)+)(?:\(\))?`")


def _resolves(dotted: str) -> bool:
    """``dotted`` (a name below the oversmoothing package) imports: a module, or an attribute chain on one."""
    import importlib

    parts = dotted.split(".")
    obj, i = None, len(parts)
    while i > 0:
        try:
            obj = importlib.import_module("oversmoothing." + ".".join(parts[:i]))
            break
        except ModuleNotFoundError:
            i -= 1
    if obj is None:
        return False
    for attr in parts[i:]:
        if not hasattr(obj, attr):
            return False
        obj = getattr(obj, attr)
    return True


def _prose(cell) -> str:
    """A cell's words a reader sees: markdown, or a code cell's figure captions and alt text (myst-nb metadata)."""
    if cell["cell_type"] == "markdown":
        return "".join(cell["source"])
    return json.dumps(cell.get("metadata", {}), ensure_ascii=False)


def test_every_library_name_cited_in_the_prose_resolves_by_import():
    """A name such as `experiments.traps.trap_status` in a chapter's text, caption or the intro must import:
    prose that cites a function that was renamed or moved fails here, not in a reader's terminal."""
    bad = []
    sources = [(nb.name, json.loads(nb.read_text())["cells"]) for nb in sorted((ROOT / "book").glob("*.ipynb"))]
    sources += [(md.name, [{"cell_type": "markdown", "source": md.read_text()}]) for md in sorted((ROOT / "book").glob("*.md"))]
    for name, cells in sources:
        for cell in cells:
            for m in CITED.finditer(_prose(cell)):
                dotted, top = m.group(1).removeprefix("oversmoothing."), m.group(2)
                if top in LIBRARY_TOP and not _resolves(dotted):
                    bad.append(f"{name}: `{m.group(1)}`")
    assert not bad, "library names in the prose that do not import:\n" + "\n".join(sorted(set(bad)))


EQ_LABEL = re.compile(r"\$\$\s*\((eq-[\w-]+)\)")
EQ_REF = re.compile(r"\{eq\}`([^`]+)`")


def test_equations_cited_by_reference_are_labelled_once():
    """The prose cites equations as {eq}`eq-...`; each label is defined by exactly one `$$ ... $$ (eq-...)` of the
    book, and the main equations of the chapters carry labels (the text refers to them by reference)."""
    labels, refs = [], []
    for nb in sorted((ROOT / "book").glob("*.ipynb")):
        for cell in json.loads(nb.read_text())["cells"]:
            if cell["cell_type"] == "markdown":
                text = "".join(cell["source"])
                labels += EQ_LABEL.findall(text)
                refs += [(nb.name, r) for r in EQ_REF.findall(text)]
    assert len(labels) == len(set(labels)), f"labels defined twice: {sorted(l for l in labels if labels.count(l) > 1)}"
    assert not [r for r in refs if r[1] not in labels], f"references to no label: {[r for r in refs if r[1] not in labels]}"
    assert {"eq-forward-bound", "eq-backward-recursion", "eq-theorem2"} <= set(labels)


def test_inline_math_is_balanced_in_every_markdown_cell():
    """Every markdown cell opens and closes its $...$ (an unpaired $ turns the rest of the paragraph, glue roles
    included, into one broken formula on the page); code spans and fenced blocks are not prose."""
    for nb in sorted((ROOT / "book").glob("0*.ipynb")):
        for i, c in enumerate(json.loads(nb.read_text())["cells"]):
            if c["cell_type"] != "markdown":
                continue
            prose = re.sub(r"```.*?```", "", "".join(c["source"]), flags=re.S)
            prose = re.sub(r"`[^`]*`", "", prose).replace(r"\$", "")
            assert prose.count("$") % 2 == 0, f"{nb.name}, markdown cell {i}: an unpaired $"
