"""Random stratified and spatially disjoint splits, on the real Salinas-A labels."""

import numpy as np
import pytest

from geofm.data.hyperspectral import read_label_mat
from geofm.data.sample import IGNORE_INDEX
from geofm.data.splits import (
    LeakageError,
    check_no_leakage,
    find_leaks,
    labelled_pixels,
    spatially_disjoint_split,
    stratified_split,
)

SALINAS_A_LABELLED = 5348


@pytest.fixture(scope="module")
def salinas_mask(salinas_a_dir):
    """(83, 86) class ids 0..5, 255 = unlabelled."""
    return read_label_mat(salinas_a_dir / "SalinasA_gt.mat", "salinasA_gt", "salinas_a")


def occupancy(coords, shape):
    grid = np.zeros(shape, dtype=bool)
    grid[coords[:, 0], coords[:, 1]] = True
    return grid


def windows_touching(centres, occupied, radius):
    """Brute force: the centres whose (2r+1) window, cut from the map, holds a True."""
    h, w = occupied.shape
    hits = []
    for r, c in centres:
        window = occupied[
            max(r - radius, 0) : min(r + radius + 1, h), max(c - radius, 0) : min(c + radius + 1, w)
        ]
        if window.any():
            hits.append((int(r), int(c)))
    return hits


def as_set(coords):
    return {tuple(map(int, rc)) for rc in coords}


# --------------------------------------------------------------------------------------------
# stratified_split


def test_stratified_split_gives_each_class_its_fraction(salinas_mask):
    coords, labels = labelled_pixels(salinas_mask)
    split = stratified_split(labels, train=0.5, val=0.2, seed=0)
    for k, n in enumerate(np.bincount(labels)):
        assert abs((labels[split.train] == k).sum() - 0.5 * n) < 1
        assert abs((labels[split.val] == k).sum() - 0.2 * n) < 1
        assert abs((labels[split.test] == k).sum() - 0.3 * n) < 1


def test_stratified_split_with_counts_gives_exact_counts_per_class(salinas_mask):
    _, labels = labelled_pixels(salinas_mask)
    split = stratified_split(labels, train=5, val=3, seed=1)
    for k, n in enumerate(np.bincount(labels)):
        assert (labels[split.train] == k).sum() == 5
        assert (labels[split.val] == k).sum() == 3
        assert (labels[split.test] == k).sum() == n - 8


def test_stratified_split_parts_are_disjoint_and_cover_every_labelled_pixel(salinas_mask):
    flat = salinas_mask.ravel()
    split = stratified_split(flat, train=0.3, val=0.1, seed=0)
    parts = [set(p.tolist()) for p in split]
    assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    assert set().union(*parts) == set(np.flatnonzero(flat != IGNORE_INDEX).tolist())
    assert sum(len(p) for p in parts) == SALINAS_A_LABELLED


def test_stratified_split_is_deterministic_with_the_seed(salinas_mask):
    _, labels = labelled_pixels(salinas_mask)
    a = stratified_split(labels, train=0.2, val=0.1, seed=7)
    b = stratified_split(labels, train=0.2, val=0.1, seed=7)
    c = stratified_split(labels, train=0.2, val=0.1, seed=8)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a.train, c.train)


def test_stratified_split_counts_too_large_name_the_small_class():
    labels = np.array([0] * 10 + [1] * 3 + [2] * 10)
    with pytest.raises(ValueError, match=r"class 1: 3") as err:
        stratified_split(labels, train=2, val=1)
    assert "class 0" not in str(err.value)


def test_stratified_split_rejects_fractions_summing_above_one():
    with pytest.raises(ValueError, match=r"0.8 \+ 0.3"):
        stratified_split(np.array([0, 1, 0, 1]), train=0.8, val=0.3)


def test_stratified_split_rejects_a_label_map():
    with pytest.raises(ValueError, match=r"1-D.*ravel"):
        stratified_split(np.zeros((4, 4), dtype=int))


# --------------------------------------------------------------------------------------------
# spatially_disjoint_split


@pytest.mark.parametrize("radius", [1, 2, 4])
def test_spatial_split_has_no_training_pixel_in_any_val_or_test_window(salinas_mask, radius):
    split = spatially_disjoint_split(
        salinas_mask, radius, train=0.5, val=0.2, block_size=12, seed=0
    )
    assert len(split.train) and len(split.val) and len(split.test)
    train_map = occupancy(split.train, salinas_mask.shape)
    assert windows_touching(split.val, train_map, radius) == []
    assert windows_touching(split.test, train_map, radius) == []
    val_map = occupancy(split.val, salinas_mask.shape)
    assert windows_touching(split.test, val_map, radius) == []


def test_random_pixel_split_puts_training_pixels_in_test_windows(salinas_mask):
    """The protocol the spatial split replaces leaks on the same scene and radius."""
    coords, labels = labelled_pixels(salinas_mask)
    split = stratified_split(labels, train=0.5, val=0.2, seed=0)
    train_map = occupancy(coords[split.train], salinas_mask.shape)
    leaking = windows_touching(coords[split.test], train_map, 2)
    assert len(leaking) > 0.9 * len(split.test)
    with pytest.raises(LeakageError):
        check_no_leakage(coords[split.train], coords[split.test], 2)


def test_spatial_split_accounts_for_every_labelled_pixel(salinas_mask):
    split = spatially_disjoint_split(salinas_mask, 2, train=0.5, val=0.2, block_size=12)
    parts = [as_set(split.train), as_set(split.val), as_set(split.test)]
    assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    labelled = as_set(np.argwhere(salinas_mask != IGNORE_INDEX))
    assert set().union(*parts) <= labelled
    kept = sum(len(p) for p in parts)
    assert kept + split.dropped["val"] + split.dropped["test"] == SALINAS_A_LABELLED
    assert split.dropped["val"] > 0 and split.dropped["test"] > 0
    assert split.class_counts.sum() == kept


def test_spatial_split_gives_train_about_its_share_of_every_class(salinas_mask):
    split = spatially_disjoint_split(salinas_mask, 2, train=0.5, val=0.2, block_size=12)
    totals = np.bincount(salinas_mask[salinas_mask != IGNORE_INDEX])
    train_share = split.class_counts[0] / totals
    assert np.all(np.abs(train_share - 0.5) < 0.1), train_share
    assert np.all(split.class_counts[2] > 0), "every class should reach the test part"


def test_spatial_split_assigns_whole_blocks(salinas_mask):
    block = 12
    split = spatially_disjoint_split(salinas_mask, 2, train=0.5, val=0.2, block_size=block)
    assert (split.block_size, split.buffer) == (block, 2)
    default = spatially_disjoint_split(salinas_mask, 2, train=0.5, val=0.2, buffer=3)
    assert (default.block_size, default.buffer) == (4 * 7, 3)  # the defaults, resolved
    for part_id, coords in enumerate((split.train, split.val, split.test)):
        assert np.all(split.block_part[coords[:, 0], coords[:, 1]] == part_id)
    for r0 in range(0, salinas_mask.shape[0], block):
        for c0 in range(0, salinas_mask.shape[1], block):
            assert len(np.unique(split.block_part[r0 : r0 + block, c0 : c0 + block])) == 1


def test_spatial_split_is_deterministic_with_the_seed(salinas_mask):
    a = spatially_disjoint_split(salinas_mask, 2, train=0.5, val=0.2, block_size=12, seed=3)
    b = spatially_disjoint_split(salinas_mask, 2, train=0.5, val=0.2, block_size=12, seed=3)
    c = spatially_disjoint_split(salinas_mask, 2, train=0.5, val=0.2, block_size=12, seed=4)
    for part in ("train", "val", "test"):
        np.testing.assert_array_equal(a.coords(part), b.coords(part))
    assert not np.array_equal(a.block_part, c.block_part)


def test_spatial_split_with_twice_the_radius_as_buffer_makes_windows_disjoint(salinas_mask):
    radius = 2
    split = spatially_disjoint_split(
        salinas_mask, radius, train=0.5, val=0.2, block_size=16, buffer=2 * radius
    )
    train_map = occupancy(split.train, salinas_mask.shape)
    # Windows of radius r around two centres overlap exactly when a window of 2r holds both.
    assert windows_touching(split.test, train_map, 2 * radius) == []
    assert windows_touching(split.val, train_map, 2 * radius) == []


def test_spatial_split_rejects_counts():
    with pytest.raises(TypeError, match="fraction"):
        spatially_disjoint_split(np.zeros((8, 8), dtype=int), 1, train=5, val=0.1)


def test_spatial_split_summary_reports_the_buffer(salinas_mask):
    split = spatially_disjoint_split(salinas_mask, 2, train=0.5, val=0.2, block_size=12)
    text = split.summary()
    assert f"dropped {split.dropped['val']} val and {split.dropped['test']} test" in text


# --------------------------------------------------------------------------------------------
# check_no_leakage


def test_check_no_leakage_names_the_leaking_pair():
    train = np.array([[5, 5]])
    with pytest.raises(LeakageError, match=r"1 of 2 test pixels.*\(7, 3\).*\(5, 5\)"):
        check_no_leakage(train, np.array([[7, 3], [9, 9]]), radius=2)
    check_no_leakage(train, np.array([[8, 5], [5, 8]]), radius=2)


def test_find_leaks_agrees_with_brute_force_on_a_random_split(salinas_mask):
    coords, labels = labelled_pixels(salinas_mask)
    split = stratified_split(labels, train=0.05, val=0.0, seed=2)
    train, test = coords[split.train], coords[split.test]
    expected = windows_touching(test, occupancy(train, salinas_mask.shape), 3)
    found = [tuple(map(int, rc)) for rc in test[find_leaks(train, test, 3)]]
    assert found == expected


def test_spatial_split_that_would_leave_val_empty_says_what_to_change(salinas_mask):
    with pytest.raises(ValueError, match=r"leaves val empty.*smaller block_size"):
        spatially_disjoint_split(salinas_mask, radius=7, seed=0)


def test_stratified_split_that_would_leave_test_empty_is_refused():
    labels = np.repeat(np.arange(10), 3)  # three members per class, like the bundled EuroSAT
    with pytest.raises(ValueError, match="test part would be empty"):
        stratified_split(labels, train=0.6, val=0.2)


def test_a_count_with_a_fraction_still_leaves_test_a_member_of_every_class():
    labels = np.repeat(np.arange(4), 4)
    split = stratified_split(labels, train=2, val=0.5, seed=0)  # val would round to 2
    assert sorted(labels[split.test].tolist()) == [0, 1, 2, 3]
    assert sorted(labels[split.val].tolist()) == [0, 1, 2, 3]


def test_a_class_inside_one_block_is_refused_or_left_out_as_asked(salinas_mask):
    mask = salinas_mask.copy()
    mask[2:6, 2:6] = 6  # a seventh class, a 4 x 4 field inside one 8 x 8 block
    with pytest.raises(ValueError, match=r"classes \[6\] have no training pixel"):
        spatially_disjoint_split(mask, radius=3, train=0.1, val=0.05, block_size=8, seed=0)
    split = spatially_disjoint_split(
        mask, radius=3, train=0.1, val=0.05, block_size=8, seed=0, exclude_unsplittable=True
    )
    assert split.excluded == (6,)
    assert split.class_counts[:, 6].tolist() == [0, 0, 0]
    for part in ("train", "val", "test"):
        coords = split.coords(part)
        assert not (mask[coords[:, 0], coords[:, 1]] == 6).any()
    assert (split.class_counts[[0, 2], :6] > 0).all()
    assert find_leaks(split.train, split.test, 3).size == 0
    # nothing to leave out: the same split as without the option
    plain = spatially_disjoint_split(salinas_mask, radius=3, block_size=8, seed=1)
    kept = spatially_disjoint_split(
        salinas_mask, radius=3, block_size=8, seed=1, exclude_unsplittable=True
    )
    assert kept.excluded == () and all(
        np.array_equal(plain.coords(p), kept.coords(p)) for p in ("train", "val", "test")
    )


# --------------------------------------------------------------------------------------------
# Cross-validation folds of a split's development pixels


def _development(salinas_mask, train=0.1):
    split = spatially_disjoint_split(salinas_mask, 3, train=train, val=0.05, block_size=8)
    return np.concatenate([split.train, split.val])


def test_random_folds_score_every_pixel_once_and_split_each_class_evenly(salinas_mask):
    from geofm.data.splits import cross_validation_folds

    coords, labels = labelled_pixels(salinas_mask)
    coords, labels = coords[::7], labels[::7]
    folds = cross_validation_folds(salinas_mask, coords, 4, seed=1)
    held = np.concatenate([f.held_out for f in folds])
    assert sorted(map(tuple, held.tolist())) == sorted(map(tuple, coords.tolist()))
    for f in folds:  # train is every pixel the fold does not score
        assert len(f.train) + len(f.held_out) == len(coords)
        assert not set(map(tuple, f.train.tolist())) & set(map(tuple, f.held_out.tolist()))
    sizes = np.stack([np.bincount(salinas_mask[tuple(f.held_out.T)], minlength=6) for f in folds])
    assert (sizes.max(0) - sizes.min(0) <= 1).all() and sizes.sum(0).tolist() == np.bincount(
        labels, minlength=6
    ).tolist()
    again = cross_validation_folds(salinas_mask, coords, 4, seed=1)
    assert all((a.held_out == b.held_out).all() for a, b in zip(folds, again, strict=True))
    other = cross_validation_folds(salinas_mask, coords, 4, seed=2)
    assert any(
        len(a.held_out) != len(b.held_out) or (a.held_out != b.held_out).any()
        for a, b in zip(folds, other, strict=True)
    )


@pytest.mark.parametrize("buffer", [0, 3])
def test_spatial_folds_are_whole_blocks_with_no_trained_pixel_in_a_scored_window(
    salinas_mask, buffer
):
    from geofm.data.splits import _block_ids, cross_validation_folds

    dev = _development(salinas_mask, train=0.5)
    folds = cross_validation_folds(salinas_mask, dev, 3, seed=0, block_size=8, buffer=buffer)
    blocks = _block_ids(salinas_mask.shape, 8)
    held = [set(map(tuple, f.held_out.tolist())) for f in folds]
    for j, f in enumerate(folds):
        assert find_leaks(f.train, f.held_out, buffer).size == 0
        # the fold trains on every development pixel outside its own blocks
        own = set(blocks[tuple(f.held_out.T)].tolist())
        assert not own & set(blocks[tuple(f.train.T)].tolist())
        assert len(f.train) + sum(1 for p in map(tuple, dev.tolist()) if blocks[p] in own) == len(
            dev
        )
        assert all(not held[j] & held[k] for k in range(3) if k != j)
    scored = sum(len(h) for h in held)
    assert scored == len(dev) if buffer == 0 else scored < len(dev)
    # each fold holds close to a third of every class spread over enough blocks
    per_class = np.bincount(salinas_mask[tuple(dev.T)], minlength=6)
    spread = np.array(
        [len(set(blocks[tuple(dev[salinas_mask[tuple(dev.T)] == k].T)].tolist())) for k in range(6)]
    )
    if buffer == 0:
        share = np.stack(
            [np.bincount(salinas_mask[tuple(f.held_out.T)], minlength=6) for f in folds]
        ) / np.maximum(per_class, 1)
        assert (spread >= 6).sum() >= 3
        assert np.abs(share - 1 / 3)[:, spread >= 6].max() < 0.2


def test_fold_errors_say_what_is_wrong(salinas_mask):
    from geofm.data.splits import cross_validation_folds

    dev = _development(salinas_mask)
    with pytest.raises(ValueError, match="folds >= 2, got 1"):
        cross_validation_folds(salinas_mask, dev, 1)
    with pytest.raises(ValueError, match="folds >= 2, got 2.0"):
        cross_validation_folds(salinas_mask, dev, 2.0)
    unlabelled = np.argwhere(salinas_mask == IGNORE_INDEX)[:3]
    with pytest.raises(ValueError, match="3 of the .* pixels to fold are unlabelled"):
        cross_validation_folds(salinas_mask, np.concatenate([dev, unlabelled]), 3)
    with pytest.raises(ValueError, match="2 pixels cannot fill 3 folds"):
        cross_validation_folds(salinas_mask, dev[:2], 3)
    # one block of pixels, buffered from its neighbours, leaves folds with nothing to score
    with pytest.raises(ValueError, match=r"have no pixel to score \(fold 0: .* kept"):
        cross_validation_folds(salinas_mask, dev, 3, block_size=8, buffer=40)
