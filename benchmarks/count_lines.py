"""Count the lines of Python packages: code, docstrings, comments and blank lines.

    python benchmarks/count_lines.py geofm gfm_bench

A line is *code* when a token other than a comment or a docstring is on it; a *docstring*
line belongs to a string that is a statement of its own (module, class and function
docstrings, and the ones documenting module constants); a *comment* line holds only a
comment; the rest are blank. A line holding code and a trailing comment counts as code.
Counts compare only between trees laid out by the same formatter: count a checkout of an
older commit after ``ruff format`` (``docs/design_notes.md``, "Formatting").
"""

from __future__ import annotations

import argparse
import io
import tokenize
from collections import Counter
from pathlib import Path

KINDS = ("code", "docstring", "comment", "blank")
_LAYOUT = {tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER}
_STATEMENT_START = {tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT}
_STATEMENT_END = {tokenize.NEWLINE, tokenize.ENDMARKER}


def count_source(text: str) -> Counter[str]:
    """Lines of ``text`` (Python source) by kind (:data:`KINDS`)."""
    tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
    kind_of: dict[int, str] = {}
    previous = tokenize.NEWLINE  # the type of the last token that is not NL or a comment
    for i, tok in enumerate(tokens):
        after, previous = (
            previous,
            previous if tok.type in (tokenize.NL, tokenize.COMMENT) else tok.type,
        )
        if tok.type in _LAYOUT:
            continue
        if tok.type == tokenize.COMMENT:
            kind_of.setdefault(tok.start[0], "comment")
            continue
        # a string statement of its own: not an f-string (a STRING token up to Python 3.11)
        alone = tok.type == tokenize.STRING and after in _STATEMENT_START
        alone = alone and "f" not in tok.string.partition(tok.string[-1])[0].lower()
        j = i + 1
        while tokens[j].type == tokenize.COMMENT:
            j += 1
        kind = "docstring" if alone and tokens[j].type in _STATEMENT_END else "code"
        for line in range(tok.start[0], tok.end[0] + 1):
            if kind == "code" or kind_of.get(line) != "code":
                kind_of[line] = kind
    counts = Counter(kind_of.values())
    # lines as tokenize sees them (str.splitlines also splits at form feeds and the like)
    counts["blank"] = len(io.StringIO(text).readlines()) - len(kind_of)
    return counts


def count_paths(paths: list[Path]) -> Counter[str]:
    """Summed :func:`count_source` over every ``.py`` file under ``paths``."""
    total: Counter[str] = Counter()
    for root in paths:
        if not root.exists():
            raise FileNotFoundError(f"{root} does not exist")
        if root.is_file() and root.suffix != ".py":
            raise ValueError(f"{root} is not a Python file (.py)")
        files = [root] if root.is_file() else sorted(root.rglob("*.py"))
        for file in files:
            total.update(count_source(file.read_text(encoding="utf-8")))
    return total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="+", type=Path, help="packages, folders or files")
    args = parser.parse_args(argv)
    counts = count_paths(args.paths)
    for kind in KINDS:
        print(f"{kind:<10} {counts[kind]:>7,}")
    print(f"{'all':<10} {sum(counts[k] for k in KINDS):>7,}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
