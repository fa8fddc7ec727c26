"""Checkpoints are untrusted: no file runs code, every bad file is one clear error naming it,
and no architecture a file describes is allocated before it is checked.

The malicious files are pickles whose unpickling would create a marker folder (an object
with ``__reduce__``); each test asserts the marker never appears.
"""

from __future__ import annotations

import ast
import os
import re
from pathlib import Path

import pytest
import torch
import yaml

from geofm.cli import main
from geofm.models import create_model
from geofm.models.checkpoints import (
    CheckpointError,
    check_architecture,
    format_tag,
    read_checkpoint,
    read_torch_file,
    registry_limits,
    save_checkpoint,
    save_encoder,
)

REPO = Path(__file__).resolve().parents[2]
SMALL = {"depth": 1}


class RunsCode:
    """Unpickling this calls ``os.makedirs(marker)``: the stand-in for any shell command."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.makedirs, (self.marker,))


def _evil(path: Path, marker: Path, payload: dict) -> Path:
    torch.save({**payload, "note": RunsCode(marker)}, path)
    return path


@pytest.fixture
def marker(tmp_path) -> Path:
    return tmp_path / "code_ran"


# --------------------------------------------------------------------------- code in files
def test_map_refuses_a_checkpoint_that_runs_code(tmp_path, marker, landsat_tif, capsys):
    evil = _evil(tmp_path / "evil.pt", marker, {"format": format_tag("pixel")})
    code = main(["map", str(landsat_tif), str(tmp_path / "map.tif"), "--checkpoint", str(evil)])
    assert code == 2 and not marker.exists()
    err = capsys.readouterr().err
    assert str(evil) in err and "os.makedirs" in err
    assert not (tmp_path / "map.tif").exists()


def test_the_deprecated_predict_refuses_a_checkpoint_that_runs_code(tmp_path, marker, capsys):
    evil = _evil(tmp_path / "evil.pt", marker, {"format": format_tag("pixel")})
    assert main(["predict", str(evil), "--out-dir", str(tmp_path / "maps")]) == 2
    assert not marker.exists()
    assert "makedirs" in capsys.readouterr().err


def test_classify_pixels_refuses_a_lora_base_that_runs_code(
    tmp_path, marker, capsys, tiny_lola_recipe
):
    evil = _evil(tmp_path / "base.pt", marker, {"format": format_tag("pixel")})
    recipe = tiny_lola_recipe
    recipe["model"] = {
        "mode": "lora",
        "base_checkpoint": str(evil),
        "lora": {"rank": 2, "alpha": 4},
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    code = main(
        [
            "classify-pixels",
            "--config",
            str(path),
            "--seeds",
            "0",
            "--output",
            str(tmp_path / "out.csv"),
            "--no-progress",
        ]
    )
    assert code == 2 and not marker.exists()
    assert str(evil) in capsys.readouterr().err


@pytest.mark.parametrize("kind", ["encoder", "pixel", "scene", "pretraining"])
def test_no_loader_runs_code(tmp_path, marker, kind):
    from geofm.inference import load_predictor
    from geofm.tasks.export import export_encoder
    from geofm.tasks.pixel_models import load_classifier
    from geofm.tasks.scene import SceneClassificationTask

    evil = _evil(tmp_path / f"{kind}.pt", marker, {"format": format_tag(kind)})
    loaders = [
        lambda: create_model("less_vit_tiny", checkpoint=evil),
        lambda: export_encoder(evil, tmp_path / "out.pt"),
        lambda: load_classifier(evil),
        lambda: load_predictor(evil),
        lambda: SceneClassificationTask.from_checkpoint(evil),
    ]
    for load in loaders:
        with pytest.raises(CheckpointError, match=re.escape(str(evil))):
            load()
    assert not marker.exists()
    assert not (tmp_path / "out.pt").exists()


def test_timm_encoder_weights_are_read_without_code(tmp_path, marker):
    from gfm_bench.encoders import TimmEncoder

    evil = _evil(tmp_path / "timm.pt", marker, {})
    with pytest.raises(CheckpointError, match="makedirs"):
        TimmEncoder("resnet18", bands=["B04", "B03", "B02"], wavelengths=None, checkpoint=evil)
    assert not marker.exists()


def _unsafe_loads(tree: ast.AST) -> list[tuple[int, str]]:
    """Calls that can unpickle without ``weights_only=True``: ``torch.load`` (however it is
    imported), ``pickle``/``np.load(allow_pickle=True)``/``yaml.load``, and Lightning loads
    (``load_from_checkpoint``, a ``ckpt_path=`` call) that do not pass ``weights_only=True``.
    """
    aliases = {
        a.asname or a.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module in ("torch", "torch.serialization")
        for a in node.names
        if a.name == "load"
    }
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func, kw = node.func, {k.arg: k.value for k in node.keywords}
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        owner = ast.unparse(func.value) if isinstance(func, ast.Attribute) else ""
        weights_only = (
            isinstance(kw.get("weights_only"), ast.Constant) and kw["weights_only"].value is True
        )
        torch_load = (name == "load" and owner in ("torch", "torch.serialization")) or (
            isinstance(func, ast.Name) and name in aliases
        )
        lightning_load = name == "load_from_checkpoint" or "ckpt_path" in kw
        unpickles = (
            (owner in ("pickle", "dill") and name in ("load", "loads"))
            or (owner in ("np", "numpy") and name == "load" and "allow_pickle" in kw)
            or (owner == "yaml" and name in ("load", "unsafe_load", "full_load"))
        )
        if torch_load or unpickles or (lightning_load and not weights_only):
            found.append((node.lineno, ast.unparse(node)[:80]))
    return found


def test_the_package_loads_files_only_through_the_checkpoint_module():
    """Every ``torch.load`` in geofm and gfm_bench is the one in
    ``geofm.models.checkpoints`` (``weights_only=True``); no other call unpickles."""
    offenders = []
    for root in ("geofm", "gfm_bench"):
        for path in sorted((REPO / root).rglob("*.py")):
            for line, call in _unsafe_loads(ast.parse(path.read_text())):
                offenders.append(f"{path.relative_to(REPO)}:{line}: {call}")
    allowed = "geofm/models/checkpoints.py"
    mine = [o for o in offenders if o.startswith(allowed)]
    assert len(mine) == 1 and "weights_only=True" in mine[0], mine
    others = [o for o in offenders if not o.startswith(allowed)]
    assert not others, "load through geofm.models.checkpoints:\n" + "\n".join(others)


def test_the_load_finder_finds_what_it_looks_for():
    bad = ast.parse(
        "import torch\nfrom torch import load as L\nimport pickle, yaml\n"
        "torch.load(p)\nL(p)\ntorch.load(p, weights_only=False)\n"
        "pickle.loads(b)\nyaml.load(t)\nTask.load_from_checkpoint(p)\n"
        "trainer.fit(m, ckpt_path=p)\n"
    )
    assert [line for line, _ in _unsafe_loads(bad)] == [4, 5, 6, 7, 8, 9, 10]
    good = ast.parse("trainer.fit(m, ckpt_path=p, weights_only=True)\nyaml.safe_load(t)\n")
    assert _unsafe_loads(good) == []


# --------------------------------------------------------------------------- broken files
def _encoder_file(path: Path, **config) -> Path:
    torch.manual_seed(0)
    model = create_model("less_vit_tiny", **{**SMALL, **config})
    save_encoder(model, "less_vit_tiny", path)
    return path


def test_not_a_checkpoint(tmp_path):
    text = tmp_path / "notes.pt"
    text.write_text("these are not weights")
    with pytest.raises(CheckpointError, match=r"notes.pt is not a PyTorch checkpoint"):
        read_torch_file(text)
    empty = tmp_path / "empty.pt"
    empty.touch()
    with pytest.raises(CheckpointError, match=r"empty.pt is empty"):
        read_torch_file(empty)
    with pytest.raises(CheckpointError, match="is a folder"):
        read_torch_file(tmp_path)
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        read_torch_file(tmp_path / "missing.pt")


def test_a_pretraining_checkpoint_with_keys_that_are_not_names_is_refused(tmp_path):
    from geofm.tasks.export import export_encoder

    odd = tmp_path / "odd.ckpt"
    torch.save(
        {
            "format": format_tag("pretraining"),
            "hyper_parameters": {"model": "less_vit_tiny"},
            "state_dict": {"mae.encoder.cls_token": torch.zeros(2), 0: torch.zeros(2)},
        },
        odd,
    )
    with pytest.raises(CheckpointError, match=r"odd.ckpt: its state_dict has keys that are not"):
        export_encoder(odd, tmp_path / "out.pt")
    assert not (tmp_path / "out.pt").exists()


def test_truncated_checkpoint(tmp_path):
    whole = _encoder_file(tmp_path / "whole.pt")
    cut = tmp_path / "cut.pt"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(CheckpointError, match=r"cut.pt is truncated or corrupt"):
        create_model("less_vit_tiny", checkpoint=cut)


def test_other_kind_and_newer_format(tmp_path, tiny_lola_checkpoint):
    encoder = _encoder_file(tmp_path / "encoder.pt")
    with pytest.raises(
        CheckpointError,
        match=r"encoder.pt is an encoder file .* not a pixel "
        r"classifier .* or a scene classifier",
    ):
        read_checkpoint(encoder, "pixel", "scene")
    with pytest.raises(CheckpointError, match="is a pixel classifier"):
        create_model("less_vit_tiny", checkpoint=tiny_lola_checkpoint)
    newer = tmp_path / "newer.pt"
    torch.save({**torch.load(encoder, weights_only=True), "format": "geofm-encoder/2"}, newer)
    with pytest.raises(
        CheckpointError,
        match=r"newer.pt was written by a newer geofm "
        r"\(format 'geofm-encoder/2'",
    ):
        create_model("less_vit_tiny", checkpoint=newer)
    alien = tmp_path / "alien.pt"
    torch.save({"format": "someone-else/3", "weights": torch.zeros(2)}, alien)
    with pytest.raises(
        CheckpointError,
        match=r"alien.pt is not a geofm file \(format "
        r"'someone-else/3'\)",
    ):
        read_checkpoint(alien, "encoder")
    plain = tmp_path / "state_dict.pt"
    torch.save(torch.zeros(3), plain)
    with pytest.raises(CheckpointError, match="holds a Tensor, not an encoder file"):
        read_checkpoint(plain, "encoder")


def test_damaged_fields_are_named(tmp_path, tiny_lola_checkpoint):
    from geofm.tasks.pixel_models import load_classifier

    ckpt = torch.load(tiny_lola_checkpoint, weights_only=True)
    ckpt["num_classes"] = "six"
    bad = tmp_path / "bad.pt"
    torch.save(ckpt, bad)
    with pytest.raises(CheckpointError, match=r"bad.pt: 'num_classes' is a str, expected int"):
        load_classifier(bad)
    ckpt["num_classes"] = 6
    del ckpt["state_dict"]
    torch.save(ckpt, bad)
    with pytest.raises(CheckpointError, match=r"bad.pt lacks 'state_dict'"):
        load_classifier(bad)


def test_weights_of_other_shapes_are_refused_before_loading(tmp_path, tiny_lola_checkpoint):
    from geofm.tasks.pixel_models import load_classifier

    ckpt = torch.load(tiny_lola_checkpoint, weights_only=True)
    key = next(k for k in ckpt["state_dict"] if k.endswith("qkv.weight"))
    ckpt["state_dict"][key] = torch.zeros(5, 5)
    bad = tmp_path / "bad.pt"
    torch.save(ckpt, bad)
    with pytest.raises(
        CheckpointError,
        match=rf"bad.pt: .*{re.escape(key)}: checkpoint "
        r"\(5, 5\) vs model",
    ):
        load_classifier(bad)


# --------------------------------------------------------------------------- sizes
@pytest.fixture
def built_devices(monkeypatch):
    """The device every registry build of ``less_vit_tiny`` ran on."""
    from geofm.models import registry

    seen: list[str] = []
    original = registry._MODELS["less_vit_tiny"]

    def spy(**kwargs):
        seen.append(torch.empty(()).device.type)
        return original(**kwargs)

    monkeypatch.setitem(registry._MODELS, "less_vit_tiny", spy)
    return seen


def test_a_huge_architecture_in_a_tiny_file_is_refused_unbuilt(tmp_path, built_devices):
    model = create_model("less_vit_tiny", **SMALL)
    path = tmp_path / "huge.pt"
    save_checkpoint(
        {
            "model": "less_vit_tiny",
            "config": {**model.config, "embed_dim": 16384, "depth": 48},
            "state_dict": model.state_dict(),
            "data": None,
            "source": "",
        },
        path,
        "encoder",
    )
    assert path.stat().st_size < 25e6
    built_devices.clear()
    with pytest.raises(
        CheckpointError,
        match=r"huge.pt: embed_dim 16384 is beyond the "
        r"registry's range \(its largest embed_dim is "
        r"768; at most 1536",
    ):
        create_model("less_vit_tiny", checkpoint=path)
    assert built_devices == []


def test_too_many_parameters_are_refused_on_the_meta_device(tmp_path, built_devices):
    """Sizes inside the range but a model far larger than any registered one: its shapes
    are matched by stride-0 tensors (a few bytes each in the file), so only its size in
    bytes stops it, and that is measured on the meta device."""
    config = {
        **create_model("less_vit_tiny", **SMALL).config,
        "embed_dim": 1536,
        "depth": 24,
        "num_heads": 24,
        "mlp_ratio": 64.0,
    }
    with torch.device("meta"):
        big = create_model("less_vit_tiny", **config)
    state = {k: torch.zeros(1).expand(v.shape) for k, v in big.state_dict().items()}
    path = tmp_path / "wide.pt"
    torch.save(
        {
            "format": format_tag("encoder"),
            "model": "less_vit_tiny",
            "config": config,
            "state_dict": state,
            "data": None,
            "source": "",
        },
        path,
    )
    assert path.stat().st_size < 5e6
    built_devices.clear()
    with pytest.raises(
        CheckpointError,
        match=r"wide.pt: the model it describes takes [\d,]+ "
        r"bytes \([\d,]+ parameters, and buffers\), "
        r"more than",
    ):
        create_model("less_vit_tiny", checkpoint=path)
    assert built_devices == ["meta"]


def test_buffers_and_band_counts_count_too(tmp_path, tiny_lola_checkpoint):
    """A pixel classifier whose window makes a buffer of window**4 indices (not saved, so
    the file need not hold it), or whose band count makes a bands x bands temporary."""
    from geofm.tasks.pixel_models import load_classifier

    ckpt = torch.load(tiny_lola_checkpoint, weights_only=True)
    ckpt["kwargs"] = {**ckpt["kwargs"], "patch": 221, "window": [200, 4]}
    bad = tmp_path / "window.pt"
    torch.save(ckpt, bad)
    with pytest.raises(
        CheckpointError,
        match=r"window.pt: the model it describes takes "
        r"[\d,]+ bytes",
    ):
        load_classifier(bad)
    ckpt = torch.load(tiny_lola_checkpoint, weights_only=True)
    ckpt["bands"] = ["b"] * 200_000
    torch.save(ckpt, bad)
    with pytest.raises(
        CheckpointError,
        match=r"bands 200000 is more than any "
        r"architecture takes \(at most 4096\)",
    ):
        load_classifier(bad)


def test_a_checkpoint_repacked_with_compression_is_refused_unread(tmp_path):
    """torch.save stores its records uncompressed; a deflated one could inflate a few KB
    into a huge tensor before any check."""
    import zipfile

    plain = tmp_path / "plain.pt"
    torch.save({"format": format_tag("encoder"), "w": torch.zeros(1 << 20)}, plain)
    packed = tmp_path / "packed.pt"
    with zipfile.ZipFile(plain) as src, zipfile.ZipFile(packed, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info))
    assert packed.stat().st_size < plain.stat().st_size / 50
    with pytest.raises(CheckpointError, match=r"packed.pt holds compressed entries"):
        read_torch_file(packed)
    assert read_torch_file(plain)["w"].numel() == 1 << 20


def test_architecture_checks_name_the_problem(tmp_path):
    where = tmp_path / "x.pt"
    with pytest.raises(CheckpointError, match=r"x.pt holds a model 'resnet9000'"):
        check_architecture(where, "resnet9000", {})
    with pytest.raises(CheckpointError, match=r"cannot be built as less_vit_tiny .*colour"):
        check_architecture(where, "less_vit_tiny", {"colour": "blue"})
    with pytest.raises(CheckpointError, match=r"depths \[8, 8, 8, 8\] is beyond"):
        check_architecture(where, "lola_specvit", {"depths": [8, 8, 8, 8]})
    with pytest.raises(CheckpointError, match="entries, more than"):
        check_architecture(where, "lola_specvit", {"conv_channels": [1] * 1000})
    limits = registry_limits()
    assert limits.sizes["embed_dim"] == 768 and limits.largest.endswith("_base")
    assert limits.max_bytes > 300e6


def test_files_geofm_writes_hold_plain_values_only(tmp_path):
    import numpy as np

    with pytest.raises(TypeError, match=r"x.pt.test_oa is a numpy.float64"):
        save_checkpoint({"test_oa": np.float64(0.5)}, tmp_path / "x.pt", "pixel")
    assert not list(tmp_path.iterdir())  # nothing written, no temporary file left
    path = save_checkpoint(
        {"classes": ["a"], "weights": torch.ones(2), "meta": {"k": None}},
        tmp_path / "x.pt",
        "pixel",
    )
    kind, back = read_checkpoint(path, "pixel")
    assert kind == "pixel" and back["format"] == "geofm-pixel/1"
    assert torch.equal(back["weights"], torch.ones(2))


def test_encoder_round_trip_keeps_weights_and_data(tmp_path):
    path = _encoder_file(tmp_path / "encoder.pt")
    torch.manual_seed(0)
    original = create_model("less_vit_tiny", **SMALL)
    loaded = create_model("less_vit_tiny", checkpoint=path, num_classes=4)
    for key, value in original.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value)
    assert loaded.data_config is None
