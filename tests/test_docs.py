"""The documentation: every public name has an API entry, the code in the pages runs, the
figures exist, the README's quick start runs, and (when mkdocs is installed) the site builds
with `mkdocs build --strict` and shows every formula as math, not as raw `$...$` text."""

from __future__ import annotations

import importlib
import inspect
import os
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import jax
import pytest

import gradtx

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
NAMESPACES = (  # public sub-namespaces of gradtx
    "curvature", "second_order", "numerics", "fusion", "contrib", "microbatching", "tree", "tree_utils", "projections",
    "perturbations", "assignment", "losses",
)


def _pages() -> list[Path]:
    return sorted(DOCS.rglob("*.md"))


def _documented() -> set[str]:
    """Identifiers with an API entry: `::: path` directives and `[](){#path}` anchors."""
    found: set[str] = set()
    for page in _pages():
        text = page.read_text(encoding="utf-8")
        found.update(re.findall(r"^:::\s+([\w.]+)\s*$", text, flags=re.MULTILINE))
        found.update(re.findall(r"\[\]\(\)\{#([\w.]+)\}", text))
    return found


def _public_paths() -> list[str]:
    paths = []
    for name in gradtx.__all__:
        if inspect.ismodule(getattr(gradtx, name)):
            module = importlib.import_module(f"gradtx.{name}")
            paths += [f"gradtx.{name}.{member}" for member in module.__all__]
        else:
            paths.append(f"gradtx.{name}")
    return paths


def test_public_namespaces_are_known():
    modules = {n for n in gradtx.__all__ if inspect.ismodule(getattr(gradtx, n))}
    assert modules == set(NAMESPACES), "update NAMESPACES here and in docs/_gen_api.py"


def test_every_public_name_has_an_api_entry():
    documented = _documented()
    missing = [path for path in _public_paths() if path not in documented]
    assert not missing, (
        f"{len(missing)} public names have no API entry: {missing}. "
        f"Regenerate the reference with `python docs/_gen_api.py`."
    )


def test_api_entries_point_at_real_objects():
    """No stale entries: every `::: gradtx...` target imports."""
    for path in sorted(p for p in _documented() if p.startswith("gradtx")):
        module_path, _, attr = path.rpartition(".")
        try:
            obj = importlib.import_module(path)
        except ImportError:
            obj = None
        if obj is None:
            parent = importlib.import_module(module_path)
            assert hasattr(parent, attr), f"docs document {path}, which does not exist"


def test_api_reference_is_up_to_date(tmp_path, monkeypatch):
    pytest.importorskip("griffe")
    sys.path.insert(0, str(DOCS))
    try:
        gen = importlib.import_module("_gen_api")
    finally:
        sys.path.remove(str(DOCS))
    monkeypatch.setattr(gen, "API", tmp_path)
    gen.main()
    for page in sorted(tmp_path.glob("*.md")):
        committed = (DOCS / "api" / page.name).read_text(encoding="utf-8")
        assert page.read_text(encoding="utf-8") == committed, (
            f"docs/api/{page.name} is out of date: run `python docs/_gen_api.py`"
        )


def test_figures_exist_and_are_small():
    referenced = set()
    for page in _pages():
        for target in re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", page.read_text(encoding="utf-8")):
            path = (page.parent / target).resolve()
            referenced.add(path)
            assert path.is_file(), f"{page.relative_to(ROOT)} shows {target}, which does not exist"
            assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
            assert path.stat().st_size < 250_000, f"{target} is {path.stat().st_size} bytes"
    assert referenced, "no figures referenced from the docs"


def _python_blocks(path: Path) -> list[str]:
    """The ```python blocks of a page (```py blocks are fragments and are not run)."""
    return re.findall(r"^```python\n(.*?)^```", path.read_text(encoding="utf-8"), flags=re.S | re.M)


GUIDE_PAGES = [p for p in _pages() if p.parent.name != "api" and _python_blocks(p)]


@pytest.mark.slow
@pytest.mark.parametrize("page", GUIDE_PAGES, ids=lambda p: str(p.relative_to(DOCS)))
def test_code_in_pages_runs(page, capsys):
    # user code runs with JAX's default rank promotion ("allow"), not the suite's "raise"
    with jax.numpy_rank_promotion("allow"):
        for block in _python_blocks(page):
            namespace: dict = {"__name__": "__docs__"}
            exec(compile(block, str(page), "exec"), namespace)


def test_readme_quick_start_runs(capsys):
    """The first ```python block of README.md, executed as is."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)
    assert blocks, "README.md has no ```python block"
    namespace: dict = {"__name__": "__readme__"}
    with jax.numpy_rank_promotion("allow"):  # JAX's default, which user code runs with
        exec(compile(blocks[0], "README.md", "exec"), namespace)
    printed = capsys.readouterr().out
    assert printed.startswith("chain(clip_by_global_norm(max_norm=1.0), adamw(learning_rate=0.01"), printed
    # it actually fits the linear model y = x @ [1, -2, 0.5]
    loss, params, x, y = (namespace[k] for k in ("loss", "params", "x", "y"))
    with jax.numpy_rank_promotion("allow"):
        initial = float(loss({"w": 0 * params["w"], "b": 0 * params["b"]}, x, y))
        final = float(loss(params, x, y))
    assert final < 1e-3 * initial
    assert abs(float(params["w"][1, 0]) + 2.0) < 0.05


def test_readme_commands_in_getting_started():
    """The getting-started page shows the README's two set-up commands verbatim."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    index = (DOCS / "index.md").read_text(encoding="utf-8")
    commands = re.findall(r"^```bash\n(.*?)\n```", readme, flags=re.S | re.M)
    assert len(commands) >= 2
    for command in commands[:2]:
        assert command in index, command


@pytest.fixture(scope="module")
def built_site(tmp_path_factory) -> Path:
    """`mkdocs build --strict` once for the tests below; the site directory it wrote.

    CI builds the site with `--strict` right before pytest and passes its directory in
    `GRADTX_BUILT_SITE` (one build instead of two, ~40 s of CPU); anywhere else it is built here.
    """
    prebuilt = os.environ.get("GRADTX_BUILT_SITE")
    if prebuilt and (Path(prebuilt) / "index.html").is_file():
        return Path(prebuilt)
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings")
    pytest.importorskip("material")
    site = tmp_path_factory.mktemp("mkdocs") / "site"
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-6000:]
    return site


@pytest.mark.slow
def test_mkdocs_build_strict(built_site):
    html = (built_site / "api" / "optimizers" / "index.html").read_text(encoding="utf-8")
    # the API entries render the functions (not the same-named submodules) under public ids
    assert 'id="gradtx.adam"' in html and "bias-corrected" in html
    ids = set()
    for page in (built_site / "api").rglob("index.html"):
        ids.update(re.findall(r'id="(gradtx[\w.]*)"', page.read_text(encoding="utf-8")))
    missing = [p for p in _public_paths() if p not in ids]
    assert not missing, f"no anchor in the built API pages for {missing}"


class _VisibleText(HTMLParser):
    """The text of an HTML page outside code, scripts and rendered math, with its line numbers."""

    HIDDEN_TAGS = frozenset({"code", "pre", "kbd", "samp", "script", "style", "textarea"})
    VOID_TAGS = frozenset(
        {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
    )

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.open: list[tuple[str, bool]] = []  # (tag, hides its content)
        self.chunks: list[tuple[int, str]] = []

    def handle_starttag(self, tag, attrs):
        if tag in self.VOID_TAGS:
            return
        classes = (dict(attrs).get("class") or "").split()
        self.open.append((tag, tag in self.HIDDEN_TAGS or "arithmatex" in classes))

    def handle_startendtag(self, tag, attrs):
        pass  # <tag/> opens nothing

    def handle_endtag(self, tag):
        if any(name == tag for name, _ in self.open):  # ignore stray end tags
            while self.open and self.open.pop()[0] != tag:
                pass

    def handle_data(self, data):
        hidden = any(hides for _, hides in self.open)
        self.chunks.append((self.getpos()[0], data, not hidden))


def _raw_dollars(html: str) -> list[str]:
    """Each `$` left in the visible text of a page, with its line and some context (the
    text around it, hidden parts included, so that the formula it belongs to shows)."""
    parser = _VisibleText()
    parser.feed(html)
    parser.close()
    text, found, hits = "", [], []
    for line, chunk, visible in parser.chunks:
        if visible:
            hits += [(line, len(text) + m.start()) for m in re.finditer(r"\$", chunk)]
        text += chunk
    for line, at in hits:
        context = " ".join(text[max(0, at - 60) : at + 80].split())
        found.append(f"line {line}: ...{context}...")
    return found


def test_raw_dollars_detector():
    """The check below sees a `$` that arithmatex left in prose, and nothing in code or math."""
    rendered = (
        '<p>a <span class="arithmatex">\\(x\\)</span> and <code>echo $HOME</code></p>'
        '<div class="arithmatex">\\[y\\]</div><pre><code>$ pip install gradtx</code></pre><br>'
        "<script>var a = '$';</script>"
    )
    assert _raw_dollars(rendered) == []
    # `$$u$$` written on a line that continues a paragraph: arithmatex renders `$u$` and
    # leaves the outer dollars as text
    unrendered = '<p>the update is\n$<span class="arithmatex">\\(u\\)</span>$\ncomputed by</p>'
    assert len(_raw_dollars(unrendered)) == 2


@pytest.mark.slow
def test_every_formula_is_rendered(built_site):
    """No page shows a formula as raw `$...$` text: arithmatex converted every one (a display
    formula inside a docstring needs a blank line before and after its `$$ ... $$` block)."""
    problems = {}
    for page in sorted(built_site.rglob("*.html")):
        found = _raw_dollars(page.read_text(encoding="utf-8"))
        if found:
            problems[str(page.relative_to(built_site))] = found
    assert not problems, "formulas left as raw $ text:\n" + "\n".join(
        f"{page}: {hit}" for page, hits in problems.items() for hit in hits
    )


def test_no_control_characters_in_pages_and_sources():
    # a formula written into a non-raw Python string loses its backslashes: "\tfrac", "\top",
    # "\text" become a TAB and "ext", "\frac" a form feed; the page still renders, wrongly
    bad = re.compile(r"[\x00-\x09\x0b-\x1f]")
    files = [*DOCS.rglob("*.md"), ROOT / "README.md", *(ROOT / "gradtx").rglob("*.py")]
    hits = [
        f"{path.relative_to(ROOT)}:{n}: {line.strip()[:80]!r}"
        for path in files
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if bad.search(line)
    ]
    assert not hits, "control characters (a lost backslash?):\n" + "\n".join(hits)
