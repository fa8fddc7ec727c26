"""The results file: columns, locking, resume after an interruption, no duplicates."""

from __future__ import annotations

import csv
import multiprocessing as mp

import pytest

from gfm_bench.results import COLUMNS, ResultsFile, RunKey, config_hash


def key(seed=0, protocol="knn", cfg=None):
    return RunKey(
        "less_vit_tiny",
        "random-init",
        "eurosat",
        protocol,
        1.0,
        seed,
        config_hash(cfg or {"k": 20}),
    )


def test_rows_have_every_column_and_headline_last(tmp_path):
    res = ResultsFile(tmp_path / "r.csv")
    assert res.append_run(
        key(),
        ("top1", 91.5),
        [("val_top1", 90.0), ("top1/Forest", 100.0)],
        time_s=1.5,
        config={"k": 20},
    )
    with open(tmp_path / "r.csv") as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == COLUMNS
    assert [r["metric"] for r in rows] == ["val_top1", "top1/Forest", "top1"]
    assert float(rows[-1]["value"]) == 91.5 and rows[-1]["config"] == '{"k":20}'
    assert rows[0]["git_commit"] and rows[0]["timestamp"]
    assert res.finished() == {key().run_id}


def test_a_finished_run_is_not_written_twice(tmp_path):
    res = ResultsFile(tmp_path / "r.csv")
    assert res.append_run(key(), ("top1", 1.0))
    assert not res.append_run(key(), ("top1", 2.0))
    assert [r["value"] for r in res.rows()] == ["1.0"]


def test_config_and_fraction_are_part_of_the_key():
    assert key(cfg={"k": 20}).run_id != key(cfg={"k": 5}).run_id
    assert config_hash({"a": 1, "b": 2}) == config_hash({"b": 2, "a": 1})
    other = RunKey("less_vit_tiny", "random-init", "eurosat", "knn", 0.1, 0, config_hash({"k": 20}))
    assert other.run_id != key().run_id


def test_interrupted_run_is_repaired_and_rerun_without_duplicates(tmp_path):
    path = tmp_path / "r.csv"
    res = ResultsFile(path)
    res.append_run(key(0), ("top1", 80.0), [("val_top1", 79.0)])
    res.append_run(key(1), ("top1", 81.0), [("val_top1", 78.0)])
    # a crash while writing run 2: its first row, then half a line, and no headline
    good = path.read_text()
    with open(path, "a") as f:
        f.write(good.splitlines()[1].replace(key(0).run_id, key(2).run_id) + "\n")
        f.write("less_vit_tiny,random-init,euro")
    assert res.finished() == {key(0).run_id, key(1).run_id}
    assert res.repair() == 2  # the orphan row and the cut line
    assert path.read_text() == good  # finished runs untouched
    assert res.append_run(key(2), ("top1", 82.0))
    rows = res.rows()
    assert sorted(r["seed"] for r in rows if r["metric"] == "top1") == ["0", "1", "2"]
    assert len(rows) == 5


def test_foreign_csv_is_refused(tmp_path):
    path = tmp_path / "other.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="not a gfm-bench results file"):
        ResultsFile(path).rows()


def _writer(path, seed, n):
    res = ResultsFile(path)
    for i in range(n):
        res.append_run(key(seed * 100 + i), ("top1", float(i)), [("val_top1", 1.0)] * 5)
        res.append_run(key(0), ("top1", -1.0))  # every process races on this one run


def test_concurrent_writers_keep_every_row_once(tmp_path):
    path = tmp_path / "r.csv"
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(path, s, 15)) for s in (1, 2, 3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    rows = ResultsFile(path).rows()
    heads = [r["run_id"] for r in rows if r["metric"] == "top1"]
    assert len(heads) == len(set(heads)) == 46
    assert len(rows) == 45 * 6 + 1
