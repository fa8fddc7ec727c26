"""The SSFTT split check draws the public code's training pixels and keeps its parts apart."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]


def test_the_published_split_is_scikit_learns_draw_with_a_validation_part_beside_it():
    from sklearn.model_selection import train_test_split

    spec = importlib.util.spec_from_file_location(
        "ssftt_split_check", REPO / "benchmarks" / "ssftt_split_check.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    labels = np.repeat(np.arange(4), [5, 40, 120, 300])
    parts = module.published_split(labels)
    expected, _ = train_test_split(
        np.arange(len(labels)), test_size=0.9, random_state=345, stratify=labels
    )
    np.testing.assert_array_equal(parts["train"], np.sort(expected))
    every = np.concatenate(list(parts.values()))
    assert len(every) == len(np.unique(every)) == len(labels)  # disjoint, and all used
    val_counts = np.bincount(labels[parts["val"]], minlength=4)
    np.testing.assert_array_equal(val_counts, [1, 2, 6, 15])  # 5% of each class, at least 1
    assert (np.bincount(labels[parts["test"]], minlength=4) > 0).all()
