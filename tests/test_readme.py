"""Every ``python`` code block of the README and of the docs runs as written.

README blocks run one by one, each in a fresh namespace, because a reader copies one block at
a time. A docs page is a tutorial read top to bottom, so its blocks run in order in one
namespace per page. Blocks fenced as ``bash``/``text`` are not run. A block may opt out with a
first line ``# docs-test: skip (<reason>)``, for a reason such as needing a server; the reason
is required. Each block runs in a fresh working directory, so the files it writes (models,
SQLite studies, caches) go away with it.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FENCE = re.compile(r"^```([\w+-]*)\s*$")
SKIP = re.compile(r"^#\s*docs-test:\s*skip\b(.*)$")
# A README block's first lines say how long it runs, e.g. "# About 30 s on 2 CPU cores".
RUN_TIME = re.compile(r"^#.*\b\d+(\.\d+)?\s*(s|min)\b", re.IGNORECASE)
DOC_PAGES = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "docs").rglob("*.md"))


def code_blocks(path: Path) -> list[tuple[int, str, str]]:
    """``(line number, language, code)`` of each fenced block in a Markdown file."""
    blocks, language, start, lines = [], None, 0, []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        match = FENCE.match(line.strip())
        if language is None and match:
            language, start, lines = match.group(1).lower(), number + 1, []
        elif language is not None and line.strip() == "```":
            blocks.append((start, language, "\n".join(lines) + "\n"))
            language = None
        elif language is not None:
            lines.append(line)
    assert language is None, f"{path}: the block opened at line {start - 1} is never closed"
    return blocks


def python_blocks(relative: str | Path) -> list[tuple[int, str]]:
    """The page's python blocks that run, after checking that every opt-out gives a reason."""
    runnable = []
    for line, language, code in code_blocks(ROOT / relative):
        if language not in ("python", "py"):
            continue
        skip = SKIP.match(code.lstrip().splitlines()[0]) if code.strip() else None
        if skip:
            assert skip.group(1).strip(" ():-—"), (
                f"{relative}:{line}: '# docs-test: skip' needs a reason, e.g. "
                "'# docs-test: skip (needs a Dask scheduler)'")
            continue
        runnable.append((line, code))
    return runnable


def run_block(relative: str, line: int, code: str, namespace: dict) -> None:
    try:
        exec(compile(code, f"{relative}:{line}", "exec"), namespace)
    except Exception as err:  # the block's own traceback, named by file and line
        raise AssertionError(f"the code block at {relative}:{line} failed: {err!r}") from err


README_BLOCKS = python_blocks("README.md")


def test_the_parser_finds_blocks_and_honours_opt_outs(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("text\n```python\nx = 1\n```\n```bash\nmake\n```\n"
                    "```python\n# docs-test: skip (needs a server)\nconnect()\n```\n"
                    "```python\n```\n", encoding="utf-8")
    assert [b[:2] for b in code_blocks(page)] == [(3, "python"), (6, "bash"), (9, "python"),
                                                  (13, "python")]
    page.write_text("```python\n# docs-test: skip\nconnect()\n```\n", encoding="utf-8")
    with pytest.raises(AssertionError, match="needs a reason"):
        python_blocks(page)
    page.write_text("```python\nx = 1\n", encoding="utf-8")
    with pytest.raises(AssertionError, match="never closed"):
        code_blocks(page)


def test_a_failing_block_is_named_by_file_and_line():
    with pytest.raises(AssertionError, match=r"README\.md:7.*ZeroDivisionError"):
        run_block("README.md", 7, "1 / 0\n", {})


def test_the_readme_has_python_blocks_and_each_states_its_run_time():
    assert len(README_BLOCKS) >= 3
    for line, code in README_BLOCKS:
        head = code.splitlines()[:3]
        assert any(RUN_TIME.match(text.strip()) for text in head), (
            f"README.md:{line}: the block's first lines should say how long it runs "
            f"(e.g. '# About 30 s on 2 CPU cores'); got {head}")


@pytest.mark.slow
@pytest.mark.parametrize("line, code", README_BLOCKS, ids=[f"README.md:{b[0]}"
                                                           for b in README_BLOCKS])
def test_readme_block_runs_on_its_own(line, code, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run_block("README.md", line, code, {"__name__": "__main__"})


@pytest.mark.slow
@pytest.mark.parametrize("page", [p for p in DOC_PAGES if python_blocks(p)])
def test_docs_page_blocks_run_in_order(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "__main__"}
    for line, code in python_blocks(page):
        run_block(page, line, code, namespace)
