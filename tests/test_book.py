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
