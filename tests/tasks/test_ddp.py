"""Pretraining and scene classification under Lightning's DDP strategy with two CPU
processes (gloo)."""

import subprocess
import sys
from pathlib import Path

import torch
from timeouts import HANG_TIMEOUT_S as TIMEOUT_S

from geofm.tasks.metrics import classification_metrics

HERE = Path(__file__).resolve().parent


def test_two_process_ddp_ends_with_identical_weights_on_both_ranks(tmp_path):
    done = subprocess.run(
        [sys.executable, str(HERE / "ddp_pretrain.py"), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        cwd=HERE.parents[1],
    )
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert [r["world"] for r in ranks] == [2, 2]
    # each rank trained on its own share of the batches: 12 windows / batch 2 = 6 batches
    # per epoch, 3 per rank, 2 epochs
    assert [len(r["seen"]) for r in ranks] == [6, 6]
    for epoch in (0, 1):
        shares = [{v for e, v in r["seen"] if e == epoch} for r in ranks]
        assert not shares[0] & shares[1]  # no batch trained on twice in one epoch
    first, second = ([v for e, v in ranks[0]["seen"] if e == k] for k in (0, 1))
    assert first != second  # a new epoch draws new windows
    a, b = ranks[0]["state"], ranks[1]["state"]
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name
    # and training moved them from where both started
    assert all(torch.equal(ranks[0]["initial"][n], ranks[1]["initial"][n]) for n in a)
    assert any(not torch.equal(a[n], ranks[0]["initial"][n]) for n in a)


def test_scene_validation_metrics_cover_every_ranks_scenes(tmp_path, eurosat_dir):
    done = subprocess.run(
        [sys.executable, str(HERE / "ddp_scene.py"), str(eurosat_dir), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        cwd=HERE.parents[1],
    )
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert [r["world"] for r in ranks] == [2, 2]
    # each process validated its own half of the 10 scenes
    assert [len(r["labels"]) for r in ranks] == [5, 5]
    labels = torch.cat([r["labels"] for r in ranks])
    preds = torch.cat([r["preds"] for r in ranks])
    assert sorted(labels.tolist()) == list(range(10))
    whole = classification_metrics(labels, preds, 10)
    for r in ranks:
        # the matrix and the logged metrics are those of all 10 scenes, on both processes
        assert r["confusion"].tolist() == whole.confusion.tolist()
        assert abs(r["metrics"]["val/oa"] - whole.oa) < 1e-6
        assert abs(r["metrics"]["val/aa"] - whole.aa) < 1e-6
        assert abs(r["metrics"]["val/kappa"] - whole.kappa) < 1e-6
