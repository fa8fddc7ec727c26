"""`geofm pretrain` end to end on the bundled samples with a tiny model; export and resume."""

import os
import sys
from pathlib import Path

import pytest
import torch
import yaml
from timeouts import HANG_TIMEOUT_S

from geofm.cli import main
from geofm.models import create_model

REPO = Path(__file__).resolve().parents[2]


def _config(root: Path, epochs: int = 2) -> Path:
    quick = yaml.safe_load((REPO / "configs" / "pretrain" / "quickstart.yaml").read_text())
    quick["model"].update(
        model_kwargs={"depth": 1, "rank": 2}, decoder_dim=32, decoder_depth=1, decoder_heads=2
    )
    quick["data"]["init_args"].update(
        batch_size=3,
        val_windows=3,
        sources=[
            {"path": "samples/eurosat_ms", "card": "eurosat_ms", "size": 64, "windows": 6},
            {
                "path": "samples/salinas_a/SalinasA_corrected.hdr",
                "card": "salinas_a",
                "size": 32,
                "windows": 3,
            },
        ],
    )
    trainer = quick["trainer"]
    trainer.update(max_epochs=epochs, default_root_dir=str(root), enable_progress_bar=False)
    for logger in trainer["logger"]:
        logger["init_args"]["save_dir"] = str(root)
    path = root / "config.in.yaml"
    root.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(quick))
    return path


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("pretrain")
    assert main(["pretrain", "--config", str(_config(root))]) == 0
    return root


def test_a_run_leaves_config_checkpoints_logs_and_figures(run):
    version = run / "logs" / "version_0"
    assert (version / "config.yaml").is_file()  # the resolved configuration
    header = (version / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"train/loss_epoch", "val/loss", "train/skipped_reads", "train/samples_per_s"} <= set(
        header
    )
    assert list((run / "tensorboard" / "version_0").glob("events.out.tfevents.*"))
    ckpts = {p.name for p in (version / "checkpoints").glob("*.ckpt")}
    assert "last.ckpt" in ckpts and any(n.startswith("best-") for n in ckpts)
    figures = {p.name for p in (version / "reconstructions").glob("*.png")}
    assert {"epoch001_13bands.png", "epoch001_204bands.png"} <= figures
    assert (version / "loss_curve.png").is_file()


def test_export_then_create_model_gives_the_same_features(run, tmp_path):
    ckpt = run / "logs" / "version_0" / "checkpoints" / "last.ckpt"
    out = tmp_path / "encoder.pt"
    assert main(["export", str(ckpt), str(out)]) == 0
    model = create_model("less_vit_tiny", checkpoint=str(out)).eval()
    assert [d["card"] for d in model.data_config] == ["eurosat_ms", "salinas_a"]
    assert len(model.data_config[1]["wavelengths_nm"]) == 204

    state = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    reference = create_model("less_vit_tiny", depth=1, rank=2).eval()
    reference.load_state_dict(
        {k[len("mae.encoder.") :]: v for k, v in state.items() if k.startswith("mae.encoder.")}
    )
    image, wl = torch.rand(2, 13, 64, 64), torch.tensor(model.data_config[0]["wavelengths_nm"])
    with torch.no_grad():
        torch.testing.assert_close(
            model.forward_features(image, wl, 10.0), reference.forward_features(image, wl, 10.0)
        )
    assert main(["export", str(ckpt), str(out)]) == 2  # exists: refused without --overwrite


def test_weights_of_another_architecture_are_refused(run, tmp_path):
    out = tmp_path / "encoder.pt"
    main(["export", str(run / "logs" / "version_0" / "checkpoints" / "last.ckpt"), str(out)])
    with pytest.raises(ValueError, match="depth: file 1, model 3"):
        create_model("less_vit_tiny", checkpoint=str(out), depth=3)
    with pytest.raises(ValueError, match="holds 'less_vit_tiny' weights, not 'less_vit_small'"):
        create_model("less_vit_small", checkpoint=str(out))


def test_resume_continues_the_same_run(run, tmp_path):
    last = run / "logs" / "version_0" / "checkpoints" / "last.ckpt"
    before = torch.load(last, map_location="cpu", weights_only=True)
    steps_per_epoch = before["global_step"] // 2
    root = tmp_path / "resumed"
    assert (
        main(["pretrain", "--config", str(_config(root, epochs=3)), "--ckpt_path", str(last)]) == 0
    )
    after = torch.load(
        root / "logs" / "version_0" / "checkpoints" / "last.ckpt",
        map_location="cpu",
        weights_only=True,
    )
    assert after["epoch"] == 2 and after["global_step"] == 3 * steps_per_epoch
    adam_steps = {int(s["step"]) for s in after["optimizer_states"][0]["state"].values()}
    assert adam_steps == {3 * steps_per_epoch}


def test_bad_runs_fail_before_training_with_a_clear_message(tmp_path, capsys):
    config = _config(tmp_path / "a")
    assert (
        main(["pretrain", "--config", str(config), "--ckpt_path", str(tmp_path / "nope.ckpt")]) == 2
    )
    assert "nope.ckpt does not exist" in capsys.readouterr().err

    class RunsCode:
        def __reduce__(self):
            return (os.makedirs, (str(tmp_path / "code_ran"),))

    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "x": RunsCode()}, evil)
    assert main(["pretrain", "--config", str(config), "--ckpt_path", str(evil)]) == 2
    assert "evil.ckpt was not loaded: it names os.makedirs" in capsys.readouterr().err
    assert not (tmp_path / "code_ran").exists()
    assert main(["pretrain", "--config", str(config), "--model.model", "less_vit_huge"]) == 2
    assert "no model named 'less_vit_huge'" in capsys.readouterr().err
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    assert (
        main(
            [
                "pretrain",
                "--config",
                str(config),
                "--trainer.default_root_dir",
                str(blocked / "run"),
            ]
        )
        == 2
    )
    assert "cannot write run outputs" in capsys.readouterr().err


def test_pretrain_report_compares_the_run_with_random_init(run, tmp_path, eurosat_dir):
    import shutil
    import subprocess
    import sys

    # scenes the run did not see: the bundled ones under other names stand in for them here
    for tif in eurosat_dir.rglob("*.tif"):
        dest = tmp_path / "eurosat" / tif.parent.name / f"held_out_{tif.name}"
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(tif, dest)
    report = tmp_path / "pretraining.md"
    done = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "pretrain_report.py"),
            "--run",
            str(run / "logs" / "version_0"),
            "--eurosat",
            str(tmp_path / "eurosat"),
            "--record",
            str(report),
        ],
        capture_output=True,
        text=True,
        timeout=HANG_TIMEOUT_S,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    text = report.read_text()
    assert "| val/loss |" in text and "| pretrained |" in text and "| random init |" in text
    assert "30 labelled scenes" in text
    assert (tmp_path / "pretraining" / "loss_curve.png").is_file()

    refused = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "pretrain_report.py"),
            "--run",
            str(run / "logs" / "version_0"),
            "--eurosat",
            str(eurosat_dir),
        ],
        capture_output=True,
        text=True,
        timeout=HANG_TIMEOUT_S,
    )
    assert refused.returncode != 0 and "used in pretraining" in refused.stderr


def test_geotiff_folder_config_runs_two_bf16_steps_on_the_bundled_landsat(tmp_path):
    assert (
        main(
            [
                "pretrain",
                "--config",
                str(REPO / "configs/pretrain/geotiff_folder.yaml"),
                "--model.model",
                "less_vit_tiny",
                "--model.model_kwargs",
                "{depth: 1}",
                "--model.decoder_dim",
                "32",
                "--model.decoder_depth",
                "1",
                "--model.decoder_heads",
                "2",
                "--data.init_args.batch_size",
                "2",
                "--data.init_args.num_workers",
                "0",
                "--trainer.max_steps",
                "2",
                "--trainer.limit_val_batches",
                "1",
                "--trainer.precision",
                "bf16-mixed",
                "--trainer.enable_progress_bar",
                "false",
                "--trainer.default_root_dir",
                str(tmp_path),
                "--trainer.logger",
                "false",
                "--trainer.callbacks",
                "[]",
                "--trainer.enable_checkpointing",
                "false",
            ]
        )
        == 0
    )


def test_ssl4eo_config_runs_two_steps_on_a_generated_tree_of_the_same_layout(tmp_path):
    sys.path.insert(0, str(REPO / "datasets" / "scripts"))
    from make_ssl4eo_fixture import write_fixture

    root = write_fixture(tmp_path / "ssl4eo", locations=3, seasons=2)
    assert (
        main(
            [
                "pretrain",
                "--config",
                str(REPO / "configs/pretrain/less_vit_b_ssl4eo.yaml"),
                "--print_config",
            ]
        )
        == 0
    )  # parses as written (8 GPUs, bf16, DDP)
    args = [
        "pretrain",
        "--config",
        str(REPO / "configs/pretrain/less_vit_b_ssl4eo.yaml"),
        "--data.init_args.dataset_kwargs",
        f"{{root: {root}, split: s2c, seasons: 2}}",
        "--data.init_args.paired",
        f"[{{dataset_kwargs: {{root: {root}, split: s1, seasons: 2}}, card: ssl4eo_s12_s1}}]",
        "--data.init_args.val_samples",
        "1",
        "--data.init_args.batch_size",
        "2",
        "--data.init_args.num_workers",
        "0",
        "--data.init_args.crop",
        "64",
        "--trainer.accelerator",
        "cpu",
        "--trainer.devices",
        "1",
        "--trainer.strategy",
        "auto",
        "--trainer.precision",
        "32-true",
        "--trainer.max_steps",
        "2",
        "--trainer.limit_val_batches",
        "1",
        "--trainer.enable_progress_bar",
        "false",
        "--trainer.logger",
        "false",
        "--trainer.callbacks",
        "[]",
        "--trainer.enable_checkpointing",
        "false",
        "--trainer.default_root_dir",
        str(tmp_path / "run"),
    ]
    # the tree has 3 locations while torchgeo's SSL4EOS12 says 251,079: without
    # num_samples, training reaches for a location that is not there
    with pytest.raises(FileNotFoundError, match=r"s2c/0\d{6}"):
        main(args)
    assert main([*args, "--data.init_args.num_samples", "3"]) == 0


def test_a_missing_ssl4eo_root_says_how_to_get_it(tmp_path, capsys):
    assert (
        main(
            [
                "pretrain",
                "--config",
                str(REPO / "configs/pretrain/less_vit_b_ssl4eo.yaml"),
                "--data.init_args.dataset_kwargs",
                f"{{root: {tmp_path}, split: s2c}}",
                "--data.init_args.paired",
                "[]",
                "--trainer.accelerator",
                "cpu",
                "--trainer.devices",
                "1",
                "--trainer.strategy",
                "auto",
                "--trainer.logger",
                "false",
                "--trainer.callbacks",
                "[]",
                "--trainer.enable_checkpointing",
                "false",
                "--trainer.default_root_dir",
                str(tmp_path / "run"),
            ]
        )
        == 2
    )
    assert "download" in capsys.readouterr().err
