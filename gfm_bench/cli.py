"""The ``gfm-bench`` command. The benchmark protocols are not built yet; the command lists the
GFM-Bench dataset cards geofm ships and says so rather than pretending to evaluate."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="gfm-bench",
        description="GFM-Bench harness (protocols not implemented yet; lists the dataset cards)")
    parser.parse_args(argv)
    from geofm.data.cards import list_dataset_cards, load_dataset_card

    names = [n for n in list_dataset_cards() if n.startswith("gfmbench_")]
    print("GFM-Bench datasets with cards in geofm:")
    for name in names:
        card = load_dataset_card(name)
        print(f"  {name:<24} {card.task:<16} {len(card.bands):>3} bands  {card.title}")
    print("evaluation protocols are not implemented yet: nothing was evaluated", file=sys.stderr)
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
