"""Every code example in README.md and docs/ runs, so none of them can rot.

Each page runs in a fresh temporary directory, its examples in document order:

- a ```` ```python ```` block is executed; the blocks of one page share one namespace, like
  the cells of a notebook;
- in a ```` ```console ```` block, each ``$ writebehind ...`` (or ``$ python -m writebehind
  ...``) line is run through ``writebehind.cli.main``, and the lines shown after it must be
  its output (stdout and stderr). Floating-point numbers may differ, a line ``...`` stands for
  any number of lines, and the expected exit status is 1 when the output shown is an error,
  0 otherwise. A console block without ``$`` prompts shows set-up commands (``pip install``)
  and is not run;
- other blocks (``diff``, ``text``...) are not code.

A block opts out only with a marker on the line before it, and must say why:
``<!-- docs-test: skip reason="..." -->`` skips it, and
``<!-- docs-test: output-varies reason="..." -->`` runs a console block's commands but checks
only their exit status. ``<!-- docs-test: save as="replica.py" -->`` before a block that
shows a file saves it there (in the page's directory) instead of running it: the blocks
after it run it.

A page that shows object storage has the line ``<!-- docs-test: s3-bucket env="NAME" -->``:
it runs against the test S3 server (``s3_server`` in conftest: the ``AWS_*`` variables point
at it), with a new bucket whose name is in the environment variable ``NAME``.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import shlex
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pint
import pytest

from writebehind.cli import main

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
FENCE = re.compile(r"^```(\w*)\s*$")
MARKER = re.compile(r'^<!--\s*docs-test:\s*([\w-]+)((?:\s+\w+="[^"]*")*)\s*-->\s*$')
ATTRIBUTE = re.compile(r'(\w+)="([^"]*)"')
S3_BUCKET = re.compile(r'^<!--\s*docs-test:\s*s3-bucket\s+env="(\w+)"\s*-->\s*$', re.MULTILINE)
NUMBER = re.compile(r"\d+\.\d+(?:e[+-]?\d+)?")


@dataclass
class Block:
    page: Path
    line: int  # of the opening fence, 1-based
    language: str
    code: str
    marker: str | None  # "skip", "output-varies", "save" or None
    save_as: str = ""  # where a "save" block goes

    @property
    def where(self) -> str:
        return f"{shown(self.page)}:{self.line}"


def shown(page: Path) -> str:
    return str(page.relative_to(ROOT)) if page.is_relative_to(ROOT) else str(page)


def blocks_of(page: Path) -> list[Block]:
    lines = page.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        fence = FENCE.match(lines[i])
        if not fence:
            i += 1
            continue
        start = i
        i += 1
        body: list[str] = []
        while i < len(lines) and lines[i].rstrip() != "```":
            body.append(lines[i])
            i += 1
        i += 1
        marker, save_as = None, ""
        previous = start - 1
        while previous >= 0 and not lines[previous].strip():
            previous -= 1
        found = MARKER.match(lines[previous]) if previous >= 0 else None
        if found:
            marker = found.group(1)
            attributes = dict(ATTRIBUTE.findall(found.group(2)))
            where = f"{shown(page)}:{start + 1}"
            assert marker in ("skip", "output-varies", "save"), (
                f"{where}: unknown marker {marker!r}"
            )
            if marker == "save":
                save_as = attributes.get("as", "")
                assert save_as and "/" not in save_as, f'{where}: save needs as="a file name"'
            else:
                reason = attributes.get("reason", "")
                assert reason.strip(), f"{where}: a docs-test marker needs a reason"
        code = "\n".join(body) + "\n"
        blocks.append(Block(page, start + 1, fence.group(1), code, marker, save_as))
    return blocks


def run_python(block: Block, namespace: dict[str, object]) -> None:
    try:
        exec(compile(block.code, block.where, "exec"), namespace)
    except Exception as exc:
        missing = missing_optional_module(exc)
        if missing is not None:
            module, extras = missing
            pytest.skip(
                f"the example at {block.where} needs {module}, an optional dependency "
                f"(pip install -e '.[{extras[0]}]')"
            )
        raise AssertionError(f"the example at {block.where} raised {exc!r}") from exc


def optional_modules() -> dict[str, list[str]]:
    """The optional dependencies (pyproject's extras), by top-level module: the extras that
    install each, the one named for it first (distribution names taken as module names,
    ``-`` read as ``_``)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    extras = project["optional-dependencies"]
    modules: dict[str, list[str]] = {}
    for extra, requirements in extras.items():
        for requirement in requirements:
            name = re.match(r"[A-Za-z0-9_.-]+", requirement)
            assert name is not None, requirement
            modules.setdefault(name.group(0).lower().replace("-", "_"), []).append(extra)
    for module, its_extras in modules.items():  # the extra named for the module first
        its_extras.sort(key=lambda extra: extra.replace("-", "_") != module)
    return modules


def missing_optional_module(exc: BaseException) -> tuple[str, list[str]] | None:
    """(module, its extras) if ``exc``, or an exception it was raised from, is the import of an
    optional dependency that is not installed; None for any other failure."""
    optional = optional_modules()
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ModuleNotFoundError) and seen.name:
            top = seen.name.split(".")[0]
            if top.lower() in optional:
                return top, optional[top.lower()]
        seen = seen.__cause__ or seen.__context__
    return None


def commands_of(block: Block) -> list[tuple[str, list[str]]]:
    """(command, expected output lines) for each ``$`` line of a console block."""
    commands: list[tuple[str, list[str]]] = []
    for line in block.code.splitlines():
        if line.startswith("$ "):
            commands.append((line[2:], []))
        elif commands:
            commands[-1][1].append(line)
    return commands


def run_command(command: str, where: str) -> tuple[int, str]:
    argv = shlex.split(command)
    if argv[:3] == ["python", "-m", "writebehind"]:
        argv = argv[3:]
    elif argv[:1] == ["writebehind"]:
        argv = argv[1:]
    else:
        raise AssertionError(f"{where}: only writebehind commands can run here: {command!r}")
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            status = main(argv)
        except SystemExit as exc:  # argparse
            status = exc.code if isinstance(exc.code, int) else 1
    return status, out.getvalue()


def output_pattern(expected: list[str]) -> re.Pattern[str]:
    parts = []
    for line in expected:
        if line.strip() == "...":
            parts.append(r"(?:[^\n]*\n)*?")
            continue
        pieces = NUMBER.split(line.rstrip())
        escaped = r"\d+\.\d+(?:e[+-]?\d+)?".join(re.escape(piece) for piece in pieces)
        parts.append(escaped + r"[ \t]*\n")
    return re.compile("".join(parts) + r"\s*\Z")


def run_console(block: Block) -> None:
    for command, expected in commands_of(block):
        where = f"{block.where} `{command}`"
        status, output = run_command(command, where)
        while expected and not expected[-1].strip():
            expected.pop()
        wanted_status = 1 if expected and expected[0].startswith("writebehind: error:") else 0
        assert status == wanted_status, f"{where} exited {status}:\n{output}"
        if expected and block.marker != "output-varies":
            assert output_pattern(expected).match(output), (
                f"{where}: the output shown differs from the real one, which is:\n{output}"
            )


@pytest.fixture
def logging_restored() -> Iterator[None]:
    """Pages may configure logging, as a user would; the rest of the suite must not see it."""
    root, ours = logging.getLogger(), logging.getLogger("writebehind")
    saved = (root.level, list(root.handlers), ours.level)
    yield
    root.setLevel(saved[0])
    root.handlers[:] = saved[1]
    ours.setLevel(saved[2])


#: Pages whose examples use the Zarr backend: among the Zarr tests (``-m zarr``) too.
ZARR_PAGES = {"scale-out.md"}


@pytest.mark.parametrize(
    "page",
    [
        pytest.param(page, marks=pytest.mark.zarr) if page.name in ZARR_PAGES else page
        for page in PAGES
    ],
    ids=shown,
)
def test_examples_of_page_run(
    page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    monkeypatch.chdir(tmp_path)
    as_if_freshly_imported("pint_xarray")
    s3_bucket = S3_BUCKET.search(page.read_text(encoding="utf-8"))
    if s3_bucket:
        monkeypatch.setenv(s3_bucket.group(1), request.getfixturevalue("s3_bucket"))
    namespace: dict[str, object] = {"__name__": "__docs__"}
    for block in blocks_of(page):
        if block.marker == "skip":
            continue
        if block.marker == "save":
            (tmp_path / block.save_as).write_text(block.code, encoding="utf-8")
        elif block.language == "python":
            run_python(block, namespace)
        elif block.language == "console":
            run_console(block)


def as_if_freshly_imported(module: str) -> None:
    """Redo what importing ``module`` does to pint's registry, if an earlier test imported it.

    conftest undoes pint_xarray's change of the application registry after each test; a page
    that imports pint_xarray must find the registry as a fresh import leaves it.
    """
    if module == "pint_xarray" and sys.modules.get(module) is not None:
        sys.modules[module].setup_registry(pint.get_application_registry())


# -- the checker itself ------------------------------------------------------------------------
def test_a_marker_without_a_reason_is_refused(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("<!-- docs-test: skip -->\n```python\n1 / 0\n```\n")
    with pytest.raises(AssertionError, match="needs a reason"):
        blocks_of(page)


def test_a_save_marker_needs_a_file_name(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("<!-- docs-test: save -->\n```python\nx = 1\n```\n")
    with pytest.raises(AssertionError, match="save needs as="):
        blocks_of(page)


def test_a_saved_block_is_a_file_not_code_to_run(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text('<!-- docs-test: save as="job.py" -->\n```python\n1 / 0\n```\n')
    (block,) = blocks_of(page)
    assert (block.marker, block.save_as, block.code) == ("save", "job.py", "1 / 0\n")


def test_output_pattern_allows_other_floats_and_elided_lines() -> None:
    pattern = output_pattern(["took 0.27 s", "...", "done"])
    assert pattern.match("took 1.50 s\nline\nanother\ndone\n")
    assert not pattern.match("took 1.50 s\nline\n")
    assert not output_pattern(["3 entries"]).match("4 entries\n")


def test_an_example_that_needs_a_missing_optional_dependency_skips_naming_it(
    tmp_path: Path,
) -> None:
    page = tmp_path / "page.md"
    # raised the way writebehind's to_xarray() reports a missing xarray: from the import error
    page.write_text(
        "```python\n"
        "try:\n"
        "    raise ModuleNotFoundError('No module named xarray', name='xarray')\n"
        "except ImportError as exc:\n"
        "    raise ImportError('to_xarray() needs xarray') from exc\n"
        "```\n"
    )
    (block,) = blocks_of(page)
    with pytest.raises(pytest.skip.Exception, match=r"needs xarray, an optional dependency"):
        run_python(block, {})


def test_an_example_that_imports_a_module_no_extra_provides_fails(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("```python\nimport writebehind_no_such_module\n```\n")
    (block,) = blocks_of(page)
    with pytest.raises(AssertionError, match="ModuleNotFoundError"):
        run_python(block, {})


def test_a_failing_example_names_its_page_and_line(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("text\n\n```python\nraise RuntimeError('boom')\n```\n")
    (block,) = blocks_of(page)
    with pytest.raises(AssertionError, match=r"page\.md:3 raised RuntimeError\('boom'\)"):
        run_python(block, {})
