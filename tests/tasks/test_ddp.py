"""Pretraining under Lightning's DDP strategy with two CPU processes (gloo)."""

import subprocess
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent


def test_two_process_ddp_ends_with_identical_weights_on_both_ranks(tmp_path):
    done = subprocess.run([sys.executable, str(HERE / "ddp_pretrain.py"), str(tmp_path)],
                          capture_output=True, text=True, timeout=600, cwd=HERE.parents[1])
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert [r["world"] for r in ranks] == [2, 2]
    # each rank trained on its own share of the batches: 12 windows / batch 2 = 6 batches
    # per epoch, 3 per rank, 2 epochs
    assert [len(r["seen"]) for r in ranks] == [6, 6]
    assert ranks[0]["seen"] != ranks[1]["seen"]
    a, b = ranks[0]["state"], ranks[1]["state"]
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name
    # and training moved them from where both started
    assert all(torch.equal(ranks[0]["initial"][n], ranks[1]["initial"][n]) for n in a)
    assert any(not torch.equal(a[n], ranks[0]["initial"][n]) for n in a)
