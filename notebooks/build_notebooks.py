"""Build the notebooks from their sources and run them, keeping their outputs.

Each notebook is written as a plain Python file in ``notebooks/src/`` with ``# %%`` cell
markers (``# %% [markdown]`` for text cells, whose lines start with ``# ``), which diffs and
reviews like code. This script turns each into ``notebooks/<name>.ipynb`` and executes it
top to bottom in a fresh kernel, in a new empty working directory, so the committed
notebook shows the outputs of an actual run from a clean state.

    python notebooks/build_notebooks.py                 # all of them
    python notebooks/build_notebooks.py 01_eurosat_scenes --no-execute

The test suite (``tests/notebooks``) checks that every committed notebook matches its
source and was executed, and runs each again from a clean folder. A notebook whose full run
is long declares its knobs in a code cell whose first line is ``# parameters`` (papermill
marks such a cell with a tag instead); the test runs it with smaller values through :func:`with_parameters`, and the
committed run always uses the defaults.
"""

from __future__ import annotations

import argparse
import ast
import copy
import sys
import tempfile
import time
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent
SOURCES = HERE / "src"
PARAMETERS = "# parameters"
KERNEL = {"display_name": "Python 3", "language": "python", "name": "python3"}


def parse_cells(text: str) -> list[tuple[str, str]]:
    """``(kind, source)`` of each cell of a percent-format script."""
    cells: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        if line.startswith("# %%"):
            kind = "markdown" if "[markdown]" in line else "code"
            cells.append((kind, []))
            continue
        if not cells:
            continue  # the module docstring / header before the first cell
        kind, lines = cells[-1]
        if kind == "markdown":
            lines.append(line[2:] if line.startswith("# ") else line.lstrip("#"))
        else:
            lines.append(line)
    return [(kind, "\n".join(lines).strip("\n")) for kind, lines in cells]


def build(name: str) -> nbformat.NotebookNode:
    cells = []
    for kind, source in parse_cells((SOURCES / f"{name}.py").read_text()):
        if kind == "markdown":
            cells.append(nbformat.v4.new_markdown_cell(source))
        else:
            cells.append(nbformat.v4.new_code_cell(source))
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = KERNEL
    nb.metadata["language_info"] = {"name": "python"}
    return nb


def with_parameters(nb: nbformat.NotebookNode, **values: object) -> nbformat.NotebookNode:
    """A copy of ``nb`` with ``values`` assigned in a new cell right after its parameters
    cell (the code cell whose first line is ``# parameters``). Only names that cell assigns
    can be set, so a renamed knob is an error here rather than a silently full run."""
    index = next(
        (
            i
            for i, cell in enumerate(nb.cells)
            if cell.cell_type == "code" and cell.source.split("\n", 1)[0].strip() == PARAMETERS
        ),
        None,
    )
    if index is None:
        raise ValueError(f"the notebook has no code cell whose first line is {PARAMETERS!r}")
    declared = {
        target.id
        for node in ast.parse(nb.cells[index].source).body
        if isinstance(node, ast.Assign | ast.AnnAssign)
        for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
        if isinstance(target, ast.Name)
    }
    unknown = sorted(set(values) - declared)
    if unknown:
        raise ValueError(
            f"{unknown} are not assigned in the parameters cell, which sets {sorted(declared)}"
        )
    out = copy.deepcopy(nb)
    lines = [f"{name} = {value!r}" for name, value in values.items()]
    out.cells.insert(index + 1, nbformat.v4.new_code_cell("\n".join(lines)))
    return out


def execute(nb: nbformat.NotebookNode, cwd: Path, timeout: int = 900) -> nbformat.NotebookNode:
    from nbclient import NotebookClient

    client = NotebookClient(
        nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}
    )
    client.execute()
    return nb


def names() -> list[str]:
    return sorted(p.stem for p in SOURCES.glob("*.py"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", help="names (default: all sources)")
    parser.add_argument("--no-execute", action="store_true", help="write without running")
    args = parser.parse_args(argv)
    for name in args.notebooks or names():
        nb = build(name)
        if not args.no_execute:
            start = time.perf_counter()
            with tempfile.TemporaryDirectory(prefix=f"{name}-") as clean:
                execute(nb, Path(clean))
            print(f"{name}: executed in {time.perf_counter() - start:.0f} s", file=sys.stderr)
        nbformat.write(nb, HERE / f"{name}.ipynb")
        print(f"wrote {HERE / f'{name}.ipynb'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
