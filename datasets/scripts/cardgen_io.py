"""Write generated cards, or check that the cards on disk match (shared by the generators)."""

from __future__ import annotations

import sys
from pathlib import Path


def write_or_check(cards: dict[str, str], datasets_dir: Path, check: bool) -> int:
    """Write each ``{relative path: text}`` under ``datasets_dir``; with ``check``, write
    nothing and return 1 if any card on disk differs from its generated text."""
    stale = []
    for rel, text in cards.items():
        path = datasets_dir / rel
        if check:
            if not path.is_file() or path.read_text(encoding="utf-8") != text:
                stale.append(rel)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path}")
    if stale:
        print("out of date (re-run without --check): " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0
