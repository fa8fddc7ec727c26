"""The gfm-bench command: run on bundled real data, refuse duplicates, resume, report."""

from __future__ import annotations

import pytest

from gfm_bench.cli import main
from gfm_bench.results import ResultsFile


def test_run_resume_and_report_on_bundled_eurosat(tmp_path, capsys):
    out = tmp_path / "results.csv"
    args = [
        "run",
        "--suite",
        "mini",
        "--datasets",
        "eurosat_ms_mini",
        "--protocols",
        "knn",
        "linear_probe",
        "--seeds",
        "0",
        "--output",
        str(out),
        "--cache-dir",
        str(tmp_path / "cache"),
        "--no-progress",
    ]
    assert main(args) == 0
    rows = ResultsFile(out).rows()
    heads = [r for r in rows if r["metric"] == "top1"]
    assert {(r["protocol"], r["checkpoint_hash"]) for r in heads} == {
        ("knn", "random-init"),
        ("linear_probe", "random-init"),
    }
    assert len([r for r in rows if r["metric"].startswith("top1/")]) == 2 * 10
    # the tree was written in the GFM-Bench EuroSAT layout from the 30 bundled scenes
    tree = tmp_path / "cache" / "eurosat_ms_mini"
    assert len(list(tree.glob("EuroSAT/*/*.tif"))) == 30
    assert len((tree / "eurosat-test.txt").read_text().split()) == 10
    capsys.readouterr()
    assert main(args) == 2  # the same runs again: refused, nothing written
    assert "pass --resume" in capsys.readouterr().err
    assert ResultsFile(out).rows() == rows
    assert main(args + ["--resume"]) == 0
    assert ResultsFile(out).rows() == rows
    assert "0 runs written, 2 skipped" in capsys.readouterr().out
    assert main(["report", str(out), "--out", str(tmp_path / "r.md")]) == 0
    text = (tmp_path / "r.md").read_text()
    assert "### eurosat_ms_mini (top-1 %)" in text and (tmp_path / "r.png").exists()


def test_run_errors_name_the_problem(tmp_path, capsys):
    base = ["run", "--output", str(tmp_path / "r.csv")]
    assert main(base + ["--datasets", "bigearthnet"]) == 2
    assert "suite mini has no dataset bigearthnet" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="--data-root"):
        main(base + ["--suite", "full"])
    with pytest.raises(SystemExit, match="weights not found"):
        main(base + ["--encoder", "less_vit_tiny:missing.pt"])
    with pytest.raises(SystemExit, match="--timm-bands"):
        main(base + ["--encoder", "timm:resnet18"])
    assert (
        main(
            base
            + [
                "--suite",
                "full",
                "--data-root",
                str(tmp_path),
                "--datasets",
                "eurosat",
                "--protocols",
                "knn",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "gfm-bench download eurosat" in err


@pytest.mark.slow
def test_the_whole_mini_suite_runs_and_reports(tmp_path):
    """The command of docs/gfm_bench.md at random initialisation (about 4 minutes)."""
    out = tmp_path / "mini.csv"
    assert (
        main(
            [
                "run",
                "--suite",
                "mini",
                "--output",
                str(out),
                "--cache-dir",
                str(tmp_path / "cache"),
                "--no-progress",
                "--report",
                str(tmp_path / "mini.md"),
            ]
        )
        == 0
    )
    heads = [r for r in ResultsFile(out).rows() if r["metric"] in ("top1", "miou")]
    assert len(heads) == 27  # EuroSAT 4 protocols, Salinas 2 x 2 fractions, tiles 1: x 3 seeds
    assert "salinas_a_tiles (mIoU %)" in (tmp_path / "mini.md").read_text()
