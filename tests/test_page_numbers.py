"""Numbers stated in the book's prose pages must come from somewhere: an executed chapter's
output (printed or glued), a committed benchmark JSON, or the run's parameters.

Every number with a decimal point or a percent sign, and every integer of 100 or more, on the
results, reviewers and methods pages is looked up among the numbers of those sources (a page
number with d decimals matches a source number that rounds to it at d decimals; a percentage
also matches a share). Numbers inside math, code, glue roles and links are skipped: glued
numbers are computed by construction. Years (1900-2099) are skipped.
"""

import json
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = ["book/results.md", "book/reviewers.md", "book/methods.md"]
NUM = re.compile(r"(?<![\w.\-/])(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?(%?)(?![\w/])")


def _strip(text: str) -> str:
    text = re.sub(r"\{[a-z:\-]+\}`[^`]*`", " ", text)      # roles: glue, doc, cite, ...
    text = re.sub(r"```.*?```", " ", text, flags=re.S)        # fenced blocks' options and code
    text = re.sub(r"\$\$.*?\$\$", " ", text, flags=re.S)
    text = re.sub(r"\$[^$\n]*\$", " ", text)
    text = re.sub(r"`[^`]*`", " ", text)
    text = re.sub(r"\]\([^)]*\)", "]", text)                  # link targets
    text = re.sub(r"arXiv \d+\.\d+", " ", text)
    return text


def page_numbers(text: str) -> list[tuple[str, float, int, bool]]:
    """(as written, value, decimals, percent) of every checked number of a page's prose."""
    out = []
    for m in NUM.finditer(_strip(text)):
        whole, frac, pct = m.group(1), m.group(2) or "", m.group(3) == "%"
        value = float(whole.replace(",", "") + frac)
        if not frac and not pct and (value < 100 or (1900 <= value <= 2099 and "," not in whole)):
            continue
        out.append((m.group(0), value, len(frac) - 1 if frac else 0, pct))
    return out


def _numbers_in(text: str) -> set[float]:
    vals = set()
    for tok in re.findall(r"-?\d[\d,]*\.?\d*(?:[eE][-+]?\d+)?", text):
        try:
            vals.add(abs(float(tok.replace(",", ""))))
        except ValueError:
            pass
    return vals


def _json_numbers(obj, acc: set[float]) -> None:
    if isinstance(obj, bool):
        return
    if isinstance(obj, (int, float)):
        acc.add(abs(float(obj)))
    elif isinstance(obj, dict):
        for v in obj.values():
            _json_numbers(v, acc)
    elif isinstance(obj, list):
        for v in obj:
            _json_numbers(v, acc)
    elif isinstance(obj, str):
        acc |= _numbers_in(obj)


def source_numbers(executed: Path) -> set[float]:
    acc: set[float] = set()
    for nb in sorted(executed.glob("*.ipynb")):
        for cell in json.loads(nb.read_text())["cells"]:
            if cell["cell_type"] == "code":
                src = "".join(cell["source"])
                if "parameters" in cell.get("metadata", {}).get("tags", []):
                    acc |= _numbers_in(src)
                for o in cell.get("outputs", []):
                    text = "".join(o.get("text", "")) + "".join(o.get("data", {}).get("text/plain", ""))
                    acc |= _numbers_in(text)
    for js in sorted((REPO / "benchmarks").glob("*.json")) + [REPO / "notebooks" / "headlines.json"]:
        if js.is_file():
            _json_numbers(json.loads(js.read_text()), acc)
    acc |= _numbers_in((REPO / "params" / "default.yaml").read_text())
    for manifest in sorted((REPO / "data_manifests").glob("*.yaml")):
        acc |= _numbers_in(manifest.read_text())
    return acc | set(PUBLISHED)


#: facts of published models that no run of this project computes (with where they come from)
PUBLISHED = {4096.0: "hidden size of LLaMA-7B, Llama-2-7B and Llama-3-8B (their published configurations)"}


def matches(value: float, decimals: int, pct: bool, sources: set[float]) -> bool:
    for target, d in ((value, decimals),) + (((value / 100.0, decimals + 2),) if pct else ()):
        tol = 0.5 * 10.0 ** (-d) + 1e-12
        if any(abs(s - target) <= tol for s in sources):
            return True
    return False


def test_page_number_parser():
    nums = page_numbers("recall 0.86 of 1,664 tests in 2018, 12 twins, 16% here, `0.5` and $0.7$, "
                        "{doc}`executed/04_encoding`, 326 TRs, arXiv 2410.19542")
    assert [n[0] for n in nums] == ["0.86", "1,664", "16%", "326"]
    assert matches(0.86, 2, False, {0.8612}) and not matches(0.86, 2, False, {0.87})
    assert matches(16, 0, True, {0.161}) and matches(1664, 0, False, {1664.0})


@pytest.mark.parametrize("page", PAGES)
def test_every_number_on_the_page_comes_from_a_run_or_a_benchmark(page):
    executed = REPO / "book" / "executed"
    if not (executed / "06_cross_model.ipynb").is_file():
        pytest.skip("the executed chapters are not there yet (they come with the default run)")
    sources = source_numbers(executed)
    missing = [w for w, v, d, pct in page_numbers((REPO / page).read_text()) if not matches(v, d, pct, sources)]
    assert not missing, (f"{page} states numbers that no executed chapter, benchmark JSON or "
                         f"parameter holds (glue them, or say where they come from): {missing}")
