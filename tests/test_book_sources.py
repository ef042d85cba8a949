"""Cheap checks of the book's sources, no build: no control characters in the pages or in the
notebooks' markdown cells (a ``\\bar`` written through a string that read ``\\b`` as a backspace
once left 0x08 bytes in the methods page and broke its formulas), and every ``$...$`` /
``$$...$$`` formula with balanced braces and backslash commands made of letters."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = sorted((REPO / "book").glob("*.md"))
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))

# C0 control characters other than tab, line feed and carriage return
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
# after a backslash in TeX: a command name (letters) or one of these one-character commands
_ONE_CHAR_COMMANDS = set(",;:!> \\{}|$%#&_")
# fences whose body is markdown (MyST directives such as {list-table}), not code
_CODE_DIRECTIVES = {"{code}", "{code-block}", "{code-cell}", "{literalinclude}", "{math}"}


def control_characters(text: str) -> list[tuple[int, str]]:
    """(line number from 1, character as ``0xNN``) of every control character in ``text``.

    Lines are split at ``\\n`` only (``str.splitlines`` would split at a form feed too)."""
    return [(i, f"0x{ord(m.group()):02x}")
            for i, line in enumerate(text.split("\n"), 1) for m in _CONTROL.finditer(line)]


def _blank(text: str, start: int, end: int) -> str:
    """``text`` with ``[start, end)`` replaced by spaces (line breaks kept, offsets unchanged)."""
    return text[:start] + re.sub(r"[^\n]", " ", text[start:end]) + text[end:]


def strip_code(text: str) -> str:
    """Code fences (but not the bodies of MyST directives like ``{list-table}``) and inline code
    spans blanked out, offsets and line numbers kept."""
    out, lines, fence = [], text.split("\n"), None
    for line in lines:
        m = re.match(r"\s*(`{3,}|~{3,})\s*(\S*)", line)
        if fence is None and m:
            info = m.group(2)
            is_code = not info.startswith("{") or info in _CODE_DIRECTIVES
            fence = (m.group(1), is_code)
            out.append(" " * len(line))
            continue
        if fence is not None and m and m.group(1).startswith(fence[0]) and not m.group(2):
            fence = None
            out.append(" " * len(line))
            continue
        out.append(" " * len(line) if fence is not None and fence[1] else line)
    text = "\n".join(out)
    for m in reversed(list(re.finditer(r"(`+)(?!`).*?(?<!`)\1(?!`)", text, flags=re.S))):
        text = _blank(text, m.start(), m.end())
    return text


def formulas(text: str) -> tuple[list[tuple[int, str]], list[int]]:
    """(line, body) of every ``$$...$$`` and ``$...$`` formula outside code, and the lines of
    ``$`` signs left without a partner (an inline formula does not cross a blank line)."""
    text = strip_code(text)
    found = []
    display = r"(?<!\\)\$\$(.+?)(?<!\\)\$\$"
    inline = r"(?<!\\)\$((?:[^$\n]|\n(?!\s*\n))+?)(?<!\\)\$"
    for pattern in (display, inline):
        for m in reversed(list(re.finditer(pattern, text, flags=re.S))):
            found.append((m.start(), text.count("\n", 0, m.start()) + 1, m.group(1)))
            text = _blank(text, m.start(), m.end())
    unpaired = [text.count("\n", 0, m.start()) + 1 for m in re.finditer(r"(?<!\\)\$", text)]
    return [(line, body) for _, line, body in sorted(found)], unpaired


def formula_problems(body: str) -> list[str]:
    """What would break MathJax in one formula: unbalanced braces, a backslash followed by
    something other than letters or a one-character command, a control character."""
    problems, depth, i = [], 0, 0
    while i < len(body):
        c = body[i]
        if c == "\\":
            nxt = body[i + 1] if i + 1 < len(body) else ""
            if nxt.isascii() and nxt.isalpha():
                while i + 1 < len(body) and body[i + 1].isascii() and body[i + 1].isalpha():
                    i += 1
            elif nxt in _ONE_CHAR_COMMANDS and nxt:
                i += 1
            else:
                problems.append(f"backslash followed by {nxt!r}")
        elif c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth < 0:
                problems.append("'}' without an opening '{'")
                depth = 0
        elif _CONTROL.match(c):
            problems.append(f"control character 0x{ord(c):02x}")
        i += 1
    if depth:
        problems.append(f"{depth} '{{' not closed")
    return problems


# ------------------------------------------------------------------ the checkers themselves


def test_checkers_catch_what_broke_the_methods_page():
    broken = "the average $\x08ar Y = \x0crac1S\\sum_s Y_s$ (z-scored)\nnext line \x1b"
    assert control_characters(broken) == [(1, "0x08"), (1, "0x0c"), (2, "0x1b")]
    assert control_characters("tab\tand\r\nnewline") == []
    assert formula_problems("\\bar Y = \\frac1S\\sum_s Y_s") == []
    assert formula_problems("\\operatorname{corr}\\!\\big(a, b\\big) \\{x\\} \\, \\;") == []
    assert formula_problems("\\frac{1}{S") == ["1 '{' not closed"]
    assert formula_problems("a}") == ["'}' without an opening '{'"]
    assert formula_problems("\\1 + \\") == ["backslash followed by '1'", "backslash followed by ''"]
    text = ("a $x$ and `$HOME` and $$\\sum_i\ny_i$$ b $z\n+ w$\n\n```text\ncost $5\n```\n"
            "```{list-table}\n* - $k$\n```\nalone $ here\n")
    found, unpaired = formulas(text)
    assert found == [(1, "x"), (1, "\\sum_i\ny_i"), (2, "z\n+ w"), (9, "k")]
    assert unpaired == [11]


# ------------------------------------------------------------------ the sources


def test_there_are_sources_to_check():
    assert any(p.name == "methods.md" for p in PAGES)
    assert NOTEBOOKS, "no notebooks/*.ipynb"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_book_pages_have_no_control_characters(page):
    hits = control_characters(page.read_text(encoding="utf-8"))
    assert not hits, "; ".join(f"{page.relative_to(REPO)} line {i}: {c}" for i, c in hits)


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_markdown_has_no_control_characters(notebook):
    nb = json.loads(notebook.read_text(encoding="utf-8"))
    hits = []
    for n, cell in enumerate(nb.get("cells", [])):
        if cell.get("cell_type") != "markdown":
            continue
        src = cell.get("source", "")
        src = "".join(src) if isinstance(src, list) else src
        hits += [f"{notebook.relative_to(REPO)} markdown cell {n} line {i}: {c}"
                 for i, c in control_characters(src)]
    assert not hits, "; ".join(hits)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_book_formulas_are_renderable(page):
    found, unpaired = formulas(page.read_text(encoding="utf-8"))
    problems = [f"{page.relative_to(REPO)} line {line}: ${body}$: {', '.join(what)}"
                for line, body in found if (what := formula_problems(body))]
    problems += [f"{page.relative_to(REPO)} line {line}: '$' without a partner"
                 for line in unpaired]
    assert not problems, "\n".join(problems)
