"""The benchmark scripts run end to end at small sizes (their figures are not checked here)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from timeouts import HANG_TIMEOUT_S

REPO = Path(__file__).resolve().parents[2]


def script(name: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``benchmarks/<name>`` with ``args`` (and extra environment variables)."""
    return subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / name), *args],
        capture_output=True,
        text=True,
        timeout=HANG_TIMEOUT_S,
        env={**os.environ, **env},
    )


def test_reading_benchmark_quick_run_writes_its_report(tmp_path):
    report = tmp_path / "reading.md"
    done = script("bench_reading.py", "--quick", "--record", str(report))
    assert done.returncode == 0, done.stderr
    assert "completed under the cap" in done.stdout
    text = report.read_text()
    assert "files/s" in text and "RLIMIT_DATA" in text


def _encoders(*args):
    return script("encoders.py", "--quick", *args)


def test_encoder_benchmark_quick_run_records_a_table_between_markers(tmp_path):
    report = tmp_path / "benchmarks.md"
    report.write_text("# Benchmarks\n\nkept above\n")
    done = _encoders("--record", str(report))
    assert done.returncode == 0, done.stderr
    text = report.read_text()
    assert text.startswith("# Benchmarks\n\nkept above\n")
    assert "<!-- encoders:begin -->" in text and "<!-- encoders:end -->" in text
    rows = [
        ln
        for ln in text.splitlines()
        if ln.startswith("| LESS ViT-Ti") or ln.startswith("| joint ViT-Ti")
    ]
    assert len(rows) == 2 and all("| - |" not in r for r in rows)
    # a second run replaces the block instead of appending another
    assert _encoders("--record", str(report)).returncode == 0
    assert report.read_text().count("<!-- encoders:begin -->") == 1


def test_encoder_benchmark_records_a_configuration_that_ran_out_of_time(tmp_path):
    done = _encoders("--timeout-s", "0.5", "--only", "joint")
    assert done.returncode == 0, done.stderr
    assert "stopped after 0 s" in done.stdout


def test_pretrain_benchmark_quick_run_records_its_table(tmp_path):
    report = tmp_path / "benchmarks.md"
    done = script("pretrain.py", "--quick", "--record", str(report))
    assert done.returncode == 0, done.stderr
    text = report.read_text()
    assert "<!-- pretrain:begin -->" in text
    row = [ln for ln in text.splitlines() if ln.startswith("| LESS ViT-Ti depth 1")]
    assert len(row) == 1 and "| - |" not in row[0]


def test_pixel_report_tables_the_recorded_results():
    """The tables in docs/pixel_classification.md come from these CSVs by this script, and
    so do its comparisons with round 12's runs (``--against``, run from the repository)."""
    done = script(
        "pixel_report.py", str(REPO / "docs" / "pixel_classification" / "salinas_a_disjoint.csv")
    )
    assert done.returncode == 0, done.stderr
    doc = (REPO / "docs" / "pixel_classification.md").read_text()
    assert done.stdout.strip() in doc
    for cell in ("indian_pines_random", "salinas_a_disjoint"):
        done = subprocess.run(
            [
                sys.executable,
                "benchmarks/pixel_report.py",
                f"docs/pixel_classification/{cell}.csv",
                "--against",
                f"docs/pixel_classification/round12/{cell}.csv",
            ],
            capture_output=True,
            text=True,
            timeout=HANG_TIMEOUT_S,
            cwd=REPO,
        )
        assert done.returncode == 0, done.stderr
        paired = [ln for ln in done.stdout.splitlines() if " of docs/" in ln]
        assert len(paired) == 3 and all(f"- {ln}\n" in doc for ln in paired)


def _pixel_results(path: Path, oa: dict[str, dict[int, float]]) -> Path:
    """A results CSV in ``classify-pixels``' layout with these per-seed OAs (and no mean row
    needed by the comparison)."""
    fields = "method,mode,split,train_fraction,seed,oa,aa,kappa,acc_a,trainable_params,"
    fields += "total_params,train_seconds,n_train,n_val,n_test"
    lines = [fields]
    for method, by_seed in oa.items():
        for seed, value in by_seed.items():
            lines.append(f"{method},full,random,0.1,{seed},{value},{value},0.5,{value},,,1,9,2,40")
        for stat in ("mean", "std"):
            lines.append(f"{method},full,random,0.1,{stat},0.5,0.5,0.5,0.5,,,1,9,2,40")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_pixel_report_pairs_methods_by_seed_with_a_t_interval(tmp_path):
    # differences 2, 4 and 6 points: mean 4, sd 2, t(0.975, 2) = 4.3027 -> 4 +- 4.97
    new = _pixel_results(
        tmp_path / "new.csv",
        {"lola": {0: 0.92, 1: 0.94, 2: 0.96}, "svm": {0: 0.90, 1: 0.90, 2: 0.90}},
    )
    done = script("pixel_report.py", str(new))
    assert done.returncode == 0, done.stderr
    assert (
        "lola against svm: higher OA on 3 of 3 seeds (0, 1, 2); mean difference +4.00 points, "
        "95% t-interval -0.97 to +8.97." in done.stdout
    )
    # an earlier recipe's run: lola paired with itself there, on the seeds both have
    # (differences -1 and +2 points; t(0.975, 1) = 12.706 -> 0.5 +- 19.06)
    old = _pixel_results(tmp_path / "old.csv", {"lola": {0: 0.93, 1: 0.92, 3: 0.99}})
    done = script("pixel_report.py", str(new), "--against", str(old))
    assert done.returncode == 0, done.stderr
    assert (
        f"lola of {new} against lola of {old}: higher OA on 1 of 2 seeds (1); "
        "mean difference +0.50 points, 95% t-interval -18.56 to +19.56." in done.stdout
    )
    done = script("pixel_report.py", str(new), str(new), "--against", str(old))
    assert done.returncode != 0
    assert "one earlier CSV per CSV: 2 CSVs, 1 --against" in done.stderr
    # seeds where the two are equal are counted apart
    same = _pixel_results(tmp_path / "same.csv", {"lola": {0: 0.92, 1: 0.90, 2: 0.97}})
    done = script("pixel_report.py", str(new), "--against", str(same))
    assert "higher OA on 1 of 3 seeds (1), level on 1 (0); mean difference" in done.stdout
    # another protocol is refused: another split, or the same seed split otherwise
    other = _pixel_results(tmp_path / "other.csv", {"lola": {0: 0.9}})
    other.write_text(other.read_text().replace(",random,", ",disjoint,"))
    done = script("pixel_report.py", str(new), "--against", str(other))
    assert done.returncode != 0 and "split ['random'] against ['disjoint']" in done.stderr
    other = _pixel_results(tmp_path / "other.csv", {"lola": {0: 0.9}})
    other.write_text(other.read_text().replace(",9,2,40", ",8,3,40"))
    done = script("pixel_report.py", str(new), "--against", str(other))
    assert done.returncode != 0 and "split the same seed differently: seed 0: 8/3/40" in done.stderr
    done = script("pixel_report.py", "--group", "g", str(new), "--against", str(old))
    assert done.returncode != 0 and "does not go with --group" in done.stderr


@pytest.mark.parametrize(
    "recorded",
    [
        "recipe_search.csv",
        "recipe_search_round8.csv",
        "recipe_search_round9.csv",
        "recipe_search_round10.csv",
    ],
)
def test_the_recipe_search_table_is_the_recorded_search(recorded):
    """docs/pixel_classification.md's validation tables are ``--report`` of their CSVs."""
    done = script(
        "pixel_recipe_search.py",
        "--variants",
        str(REPO / "benchmarks" / "pixel_recipe_variants.yaml"),
        "--output",
        str(REPO / "docs" / "pixel_classification" / recorded),
        "--report",
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() in (REPO / "docs" / "pixel_classification.md").read_text()


def test_the_stop_epoch_table_is_the_recorded_curves():
    """docs/pixel_classification.md's round-11 table is ``--curves`` of the kept curves."""
    recorded = REPO / "docs" / "pixel_classification"
    done = script(
        "pixel_recipe_search.py",
        "--curves",
        str(recorded / "recipe_search_round11.csv"),
        str(recorded / "recipe_search_round11_random.csv"),
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() in (REPO / "docs" / "pixel_classification.md").read_text()


def test_round_12_tables_are_the_kept_predictions():
    """docs/pixel_classification.md's round-12 tables are ``--selection`` of the kept
    predictions, with and without the choice of epoch (the second inside a list item)."""
    recorded = REPO / "docs" / "pixel_classification"
    runs = [str(recorded / f"recipe_search_round12{s}.csv") for s in ("", "_random")]
    doc = (REPO / "docs" / "pixel_classification.md").read_text()
    done = script("pixel_recipe_search.py", "--selection", *runs, "--at", "37")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() in doc
    assert "| ctx75_fp32 | 59 (best of the mean) |" in done.stdout
    done = script("pixel_recipe_search.py", "--selection", *runs, "--at", "37", "59", "--no-choice")
    assert done.returncode == 0, done.stderr
    assert "\n".join("  " + line for line in done.stdout.strip().splitlines()) in doc


#: the groups of docs/pixel_classification.md's "LoRA across scenes" table
TRANSFER_GROUPS = {
    "Salinas-A → Indian Pines, 5%": ["sa_to_ip_5pct", "sa_to_ip_5pct_refit", "sa_to_ip_5pct_stem"],
    "Salinas-A → Indian Pines, 10 per class": [
        "sa_to_ip_10pc",
        "sa_to_ip_10pc_refit",
        "sa_to_ip_10pc_stem",
    ],
    "Indian Pines → Salinas-A, 5%": ["ip_to_sa_5pct", "ip_to_sa_5pct_refit", "ip_to_sa_5pct_stem"],
    "Indian Pines → Salinas-A, 10 per class": [
        "ip_to_sa_10pc",
        "ip_to_sa_10pc_refit",
        "ip_to_sa_10pc_stem",
    ],
}


def test_pixel_report_summarises_the_transfer_runs_and_draws_them(tmp_path):
    """The transfer table in docs/pixel_classification.md comes from these CSVs."""
    results = REPO / "docs" / "pixel_classification" / "transfer"
    png = tmp_path / "summary.png"
    args = []
    for name, stems in TRANSFER_GROUPS.items():
        args += ["--group", name, *(str(results / f"{s}.csv") for s in stems)]
    done = script("pixel_report.py", *args, "--plot", str(png))
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("| lola (lora), PCA ") == 8  # matched and refit, 4 settings
    assert done.stdout.count("| lola (lora + frontend, patch_embed), PCA matched |") == 4
    doc = (REPO / "docs" / "pixel_classification.md").read_text()
    assert done.stdout.strip() in doc
    assert png.stat().st_size > 10_000
    bad = script("pixel_report.py", "--plot", str(png), str(results / "ip_to_sa_5pct.csv"))
    assert bad.returncode == 2 and "--plot draws a --group summary" in bad.stderr


def test_kernel_benchmark_quick_run_measures_both_paths_and_says_what_is_unmeasured(tmp_path):
    """In Triton's interpreter both columns are filled, and the record says that the GPU
    figures are still to be measured."""
    report = tmp_path / "benchmarks.md"
    done = script("kernels.py", "--quick", "--record", str(report), TRITON_INTERPRET="1")
    assert done.returncode == 0, done.stderr
    text = report.read_text()
    assert "<!-- kernels-cpu:begin -->" in text and "still to be measured" in text
    assert "LoRA fine-tuning" in text and "of the step" in text
    rows = [
        ln for ln in text.splitlines() if ln.startswith(("| combine", "| attention", "| LoRA fc1"))
    ]
    assert len(rows) == 5
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[5] != "-" and cells[6] != "-", row  # reference and Triton forward times


@pytest.mark.skipif(sys.platform != "linux", reason="peak RSS from /proc (Linux)")
def test_inference_memory_benchmark_quick_run_checks_its_bound(tmp_path):
    report = tmp_path / "inference.md"
    done = script("inference_memory.py", "--quick", "--record", str(report))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "scene:" in done.stdout and "pixel:" in done.stdout
    assert done.stdout.count("within the bound") == 2
    assert "times the 48 MiB allowance" in report.read_text()  # raster >> allowance
    text = report.read_text()
    assert "| LESS ViT-Ti (2 blocks, 64 wide) scene classifier" in text
    assert text.count("(within)") == 2


def test_line_count_tells_code_from_docstrings_comments_and_blank_lines(tmp_path, capsys):
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import count_lines
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    source = '''"""Module
docstring."""

# a comment
X = """not a
docstring"""  # code with a comment
"""The docstring of X."""


def f(a):
    """One line."""

    return a  # code
'''
    assert count_lines.count_source(source) == {
        "code": 4,
        "docstring": 4,
        "comment": 1,
        "blank": 4,
    }
    # a docstring with a comment after it; an f-string statement is code; a form feed is
    # no line of its own
    assert count_lines.count_source('"""Doc."""  # why\nf"""{x}"""\n\x0c\n') == {
        "docstring": 1,
        "code": 1,
        "blank": 1,
    }
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "m.py").write_text(source)
    (tmp_path / "pkg" / "notes.txt").write_text("not python\n")
    assert count_lines.main([str(tmp_path / "pkg")]) == 0
    assert capsys.readouterr().out.split()[:2] == ["code", "4"]
    with pytest.raises(FileNotFoundError, match="does not exist"):
        count_lines.count_paths([tmp_path / "missing"])
    with pytest.raises(ValueError, match="not a Python file"):
        count_lines.count_paths([tmp_path / "pkg" / "notes.txt"])


def test_pixel_step_time_times_the_recipes_model_in_both_precisions():
    done = script(
        "pixel_step_time.py", "--steps", "1", "--warmup", "0", "--threads", "1", "--repeats", "1"
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "lola_specvit" in out and "'components': 60" in out and "batch 64" in out
    assert "float32:" in out and "bfloat16 (mixed):" in out and "x as fast" in out


def test_pixel_step_time_times_variants_beside_the_recipe():
    """``--variant`` builds each variant over the config's file, as the recipe search does:
    the configs' front-end (round 14's) has half the channels of cw05's, which pins round
    13's, and an unknown name lists the known ones."""
    quick = ["--steps", "1", "--warmup", "0", "--threads", "1", "--repeats", "1"]
    done = script("pixel_step_time.py", *quick, "--variant", "cw05")
    assert done.returncode == 0, done.stderr
    recipe, variant = done.stdout.splitlines()[1:3]
    assert recipe.split(":")[0].strip() == "recipe" and "1.00x the recipe's" in recipe
    assert variant.split(":")[0].strip() == "cw05" and "'conv_channels': [8, 16, 32]" in variant
    assert "'conv_channels': [4, 8, 16]" in recipe and "bfloat16" not in done.stdout
    done = script("pixel_step_time.py", *quick, "--variant", "cw05", "nope")
    assert done.returncode != 0
    assert "has no variant nope; it has current," in done.stderr
