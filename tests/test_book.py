"""End to end: the default run executes every stage's notebook, and the book builds with every
chapter and its figures. The artifacts land in the repository's store (runs/), so the nbval
regression of notebooks/ that follows reuses them."""

import re

import pytest

from llmbrain_utils import pipeline

# figures each chapter must show at least (inline PNGs, plus the interactive viewer)
MIN_FIGURES = {
    "00_stimulus": 1, "01_extraction": 3, "02_dictionary": 3, "03_fmri_data": 3,
    "04_encoding": 4, "05_fbn_mapping": 3, "06_cross_model": 4,
}


@pytest.fixture(scope="module")
def built_book():
    records = pipeline.run()
    assert [r["stage"] for r in records] == list(pipeline.STAGES)
    index = pipeline.build_book()
    return index.parent


def test_the_chapters_read_what_was_built_ahead(built_book):
    """The default run's second process (llmbrain_utils.prefetch) built only artifacts that a
    chapter then read (the same keys: the chapters' own parameters), and none failed."""
    import json
    from pathlib import Path

    from llmbrain_utils import config, prefetch

    folder = Path(config.validate({}).runs_dir) / "books" / "default"
    log = folder / "prefetch.log"
    if not log.is_file():
        pytest.skip("nothing was built ahead: every chapter it serves was unchanged, or one CPU")
    recs = prefetch.read_log(log)
    assert recs, log.read_text()[-2000:]
    assert all(r["status"] == "done" for r in recs), [r for r in recs if r["status"] != "done"]
    manifest = json.loads((folder / "manifest.json").read_text())
    read = {(a["stage"], a["key"]) for st in manifest["stages"].values()
            for a in st.get("artifacts") or []}
    assert {(r["stage"], r["key"]) for r in recs} <= read


def test_every_chapter_page_exists_with_its_figures(built_book):
    for stem, n_min in MIN_FIGURES.items():
        page = built_book / "book" / "executed" / f"{stem}.html"
        assert page.is_file(), f"chapter {stem} was not built"
        html = page.read_text()
        n_img = len(re.findall(r"<img[^>]+(?:src=\"data:image/png|\.png)", html))
        assert n_img >= n_min, f"{stem}: {n_img} figures, expected >= {n_min}"
        assert "Traceback (most recent call last)" not in html, f"{stem} shows an error"


def test_book_pages_and_viewer(built_book):
    for page in ("index.html", "book/intro.html", "book/methods.html", "book/results.html",
                 "book/reviewers.html", "book/performance.html", "book/bibliography.html"):
        assert (built_book / page).is_file(), page
    # formulas: MathJax from the book's own _static (offline), not from a remote host
    methods = (built_book / "book" / "methods.html").read_text()
    assert re.search(r'<script[^>]+src="[./]*_static/mathjax/tex-chtml\.js', methods), \
        "the methods page does not load the local MathJax"
    assert (built_book / "_static" / "mathjax" / "output" / "chtml" / "fonts" / "woff-v2").is_dir()
    enc = (built_book / "book" / "executed" / "04_encoding.html").read_text()
    assert "brainsprite" in enc.lower() or "iframe" in enc.lower(), "the interactive brain viewer is missing"


#: the output box's width in characters of its monospace font (measured on a screenshot of a
#: chapter: a printed line is cut after about 88 characters)
CODE_BOX_CHARS = 88


def _book_pngs(built_book):
    """(page, src, path) of every PNG <img> on the chapters and the book's pages."""
    pages = sorted((built_book / "book" / "executed").glob("*.html")) + [built_book / "book" / "results.html"]
    for page in pages:
        for src in re.findall(r'<img[^>]+src="([^"]+\.png)"', page.read_text()):
            yield page, src, (page.parent / src).resolve()


def test_every_figure_is_legible_at_the_page_width(built_book):
    """No text under 9 pt where the figure is shown: a figure wider than the page column is
    scaled down with its fonts. The fonts are those the figure was drawn with (the PNG's
    ``llmbrain`` record, written by plotting.style()'s inline formatter)."""
    import json

    from PIL import Image

    from llmbrain_utils import plotting

    problems, n = [], 0
    for page, src, path in _book_pngs(built_book):
        with Image.open(path) as im:
            record, width = im.info.get("llmbrain"), im.size[0]
        if record is None:
            problems.append(f"{page.name}: {src} has no font record (drawn without plotting.style())")
            continue
        n += 1
        rec = json.loads(record)
        if rec["min_font_pt"] is None:
            continue
        shown = rec["min_font_pt"] * min(1.0, plotting.PAGE_WIDTH_PX / width)
        if shown < plotting.MIN_FONT_PT - 1e-6:
            problems.append(f"{page.name}: {src} ({width} px wide, {rec['width_in']} in): smallest font "
                            f"{rec['min_font_pt']:g} pt, {shown:.1f} pt as shown")
    assert n >= sum(MIN_FIGURES.values()), f"only {n} figures checked"
    assert not problems, "\n".join(problems)


def test_no_output_line_is_wider_than_the_code_box(built_book):
    """Printed output fits the page: every line of text output (streams, and plain text where no
    HTML table or image stands for it) of the cells the book shows; and no stray repr of an
    object (a cell's last expression left showing, e.g. ``<matplotlib.colorbar.Colorbar at 0x...>``)."""
    import nbformat

    stray = re.compile(r"^\[?<[\w.]+ (?:at|object at) 0x[0-9a-f]+>")
    problems = []
    for path in sorted(pipeline.EXECUTED.glob("*.ipynb")):
        nb = nbformat.read(str(path), as_version=4)
        for i, cell in enumerate(nb.cells):
            if cell.cell_type != "code" or "remove-cell" in cell.metadata.get("tags", []):
                continue
            for out in cell.get("outputs", []):
                if out.get("output_type") == "stream":
                    text = out.get("text", "")
                else:
                    data = out.get("data", {})
                    if any(k in data for k in ("text/html", "image/png", "application/vnd.jupyter.widget-view+json")):
                        continue
                    text = data.get("text/plain", "")
                    if stray.match(text):
                        problems.append(f"{path.name} cell {i}: a stray repr {text[:60]}")
                for line in text.splitlines():
                    line = line.rsplit("\r", 1)[-1]  # a progress bar's last state
                    if len(line) > CODE_BOX_CHARS:
                        problems.append(f"{path.name} cell {i}: {len(line)} characters: {line[:60]}...")
    assert not problems, "\n".join(problems[:40])


def test_second_run_reuses_everything():
    records = pipeline.run()
    assert all(r["status"] == "unchanged" for r in records)


def test_pages_render_in_a_headless_browser(built_book):
    """Screenshots of every chapter (kept in _build/screenshots/ as CI artifacts)."""
    import shutil
    import subprocess
    import tempfile

    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("no headless Chromium on this machine (apt-get install chromium)")
    out = built_book.parent / "screenshots"
    out.mkdir(exist_ok=True)
    pages = ["index"] + [f"book/executed/{s}" for s in MIN_FIGURES]
    for page in pages:
        png = out / (page.replace("/", "_") + ".png")
        png.unlink(missing_ok=True)
        with tempfile.TemporaryDirectory() as profile:
            subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                            "--no-first-run", "--disable-background-networking",
                            "--disable-component-update", "--disable-sync", f"--user-data-dir={profile}",
                            "--hide-scrollbars", "--window-size=1400,2400", "--virtual-time-budget=5000",
                            f"--screenshot={png}", (built_book / f"{page}.html").as_uri()],
                           capture_output=True, timeout=120)
        assert png.is_file() and png.stat().st_size > 20_000, f"{page}: no screenshot or a blank one"
