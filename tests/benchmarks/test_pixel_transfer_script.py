"""benchmarks/pixel_transfer.sh runs the commands docs/pixel_classification.md reports: each
call of ``geofm`` is recorded by a stand-in on the PATH (nothing is trained)."""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

from timeouts import HANG_TIMEOUT_S

REPO = Path(__file__).resolve().parents[2]


def test_transfer_script_runs_the_bases_then_three_lora_settings_per_setting(tmp_path):
    calls = tmp_path / "calls.txt"
    stub = tmp_path / "bin" / "geofm"
    stub.parent.mkdir()
    stub.write_text(f'#!/usr/bin/env bash\nprintf "%q " "$@" >> {calls}\necho >> {calls}\n')
    stub.chmod(0o755)
    env = {**os.environ, "PATH": f"{stub.parent}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(
        ["bash", str(REPO / "benchmarks" / "pixel_transfer.sh"), "/data/ip", "out"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=HANG_TIMEOUT_S,
    )
    assert done.returncode == 0, done.stderr
    runs = [shlex.split(line) for line in calls.read_text().splitlines()]
    assert len(runs) == 2 + 4 * 3  # two bases, then three LoRA runs in each of 4 settings

    def option(run: list[str], name: str) -> str | None:
        return run[run.index(name) + 1] if name in run else None

    assert [option(r, "--output") for r in runs[:2]] == [
        "out/base_indian_pines.csv",
        "out/base_salinas_a.csv",
    ]
    assert all(option(r, "--train-fraction") == "0.9" for r in runs[:2])
    # the recipe the recorded table ran with (round 2), whatever the configs hold now
    assert all(option(r, "--model.kwargs.components") == "30" for r in runs)
    assert all(option(r, "--train.precision") == "32-true" for r in runs)
    assert all(option(r, "--train.stop_epoch") == "null" for r in runs)  # every epoch trained
    assert all(option(r, "--train.keep") == "best" for r in runs)  # the configs keep the last
    assert all(option(r, "--train.class_weight_power") == "0" for r in runs)
    assert all(option(r, "--model.kwargs.conv_channels") == "[8, 16, 32]" for r in runs)
    assert option(runs[0], "--scene.root") == "/data/ip"
    stems = {Path(str(option(r, "--output"))).stem: r for r in runs[2:]}
    for setting in ("sa_to_ip_5pct", "sa_to_ip_10pc", "ip_to_sa_5pct", "ip_to_sa_10pc"):
        alone, refit, stem = (stems[setting + s] for s in ("", "_refit", "_stem"))
        base = "out/base_sa/" if setting.startswith("sa") else "out/base_ip/"
        for run in (alone, refit, stem):
            assert option(run, "--model.mode") == "lora"
            assert str(option(run, "--model.base_checkpoint")).startswith(base)
            assert option(run, "--seeds") == "0"
        # LoRA alone must say so: the configs' LoRA trains the stem too
        assert option(alone, "--model.lora.train") == option(refit, "--model.lora.train") == "[]"
        assert option(stem, "--model.lora.train") is None
        assert [option(r, "--model.base_pca") for r in (alone, refit, stem)] == [
            "matched",
            "refit",
            "matched",
        ]
        assert option(alone, "--baselines") == "[svm, scratch, finetune]"
        amount = "--train-per-class" if setting.endswith("10pc") else "--train-fraction"
        assert all(amount in r for r in (alone, refit, stem))
