"""Encoder adapters, band matching and every protocol end to end on small synthetic data.

The datasets here are synthetic on purpose (shape and error-path tests); the real-data
runs are in test_bench_suite.py and the GFM-Bench layouts in the dataset tests.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from geofm.data.sample import make_sample
from gfm_bench.encoders import BandMatchError, GeofmEncoder, TimmEncoder, match_bands
from gfm_bench.protocols import (
    BenchData,
    applicable,
    label_fraction_indices,
    linear_probe,
    run_protocol,
)

S2 = ["B02", "B03", "B04", "B08"]
S2_WL = [492.4, 559.8, 664.6, 832.8]


class Synthetic(torch.utils.data.Dataset):
    """Class k has mean brightness k in its first band: learnable from the image."""

    def __init__(self, n, task, num_classes=3, size=32, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.items = []
        for i in range(n):
            k = i % num_classes
            image = torch.rand(4, size, size, generator=g)
            image[0] += k
            extra = {}
            if task == "classification":
                extra["label"] = torch.tensor(k)
            elif task == "multilabel":
                extra["label"] = torch.tensor([1.0 if j <= k else 0.0 for j in range(num_classes)])
            else:
                mask = (image[0] > image[0].median()).long() * (k % num_classes)
                mask[:2] = 255
                extra["mask"] = mask
            self.items.append(make_sample(image, S2_WL, 10.0, S2, **extra))

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def data(task, n=12, **kw):
    return BenchData(
        name=f"synthetic_{task}",
        task=task,
        num_classes=3,
        train=Synthetic(n, task),
        val=Synthetic(6, task, seed=1),
        test=Synthetic(6, task, seed=2),
        mean=[0.5] * 4,
        std=[0.3] * 4,
        bands=S2,
        classes=("a", "b", "c"),
        **kw,
    )


@pytest.fixture(scope="module")
def tiny():
    return GeofmEncoder("less_vit_tiny", depth=2, rank=2)


def test_match_bands_by_name_then_wavelength():
    assert match_bands(["B04", "B02"], None, S2, S2_WL) == [2, 0]
    # other names (Landsat-style) found by wavelength within the tolerance
    assert match_bands(["red", "nir"], [660.0, 840.0], S2, S2_WL) == [2, 3]
    with pytest.raises(BandMatchError, match=r"needs bands B11 \(1613.7 nm\).*data has: B02"):
        match_bands(["B04", "B11"], [664.6, 1613.7], S2, S2_WL)
    with pytest.raises(BandMatchError, match="needs bands B12"):
        match_bands(["B12"], None, S2, S2_WL)


def test_timm_encoder_takes_its_bands_and_names_missing_ones():
    enc = TimmEncoder("resnet18", bands=["B04", "B03", "B02"], wavelengths=None)
    batch = {
        "image": torch.rand(2, 4, 32, 32),
        "wavelengths": torch.tensor(S2_WL),
        "gsd": torch.tensor([10.0, 10.0]),
        "bands": tuple(S2),
    }
    assert enc.features(batch).shape == (2, enc.embed_dim)
    maps = enc.feature_maps(batch)
    assert len(maps) == 4 and maps[0].shape[0] == 2
    batch["bands"] = ("B02", "B03", "B08", "B8A")
    with pytest.raises(BandMatchError, match="needs bands B04"):
        enc.features(batch)


def test_stacked_vit_without_band_names_refuses_other_band_counts():
    enc = GeofmEncoder("stacked_vit_tiny", depth=1, in_chans=13)
    with pytest.raises(BandMatchError, match="built for 13 stacked bands.*B02, B03, B04, B08"):
        enc.check_bands(S2, S2_WL)


def test_geofm_adapter_features_and_maps(tiny):
    batch = {
        "image": torch.rand(2, 4, 32, 32),
        "wavelengths": torch.tensor(S2_WL),
        "gsd": torch.tensor([10.0, 10.0]),
        "bands": tuple(S2),
    }
    assert tiny.features(batch).shape == (2, 192)
    maps = tiny.feature_maps(batch)
    assert [tuple(m.shape) for m in maps] == [(2, 192, 2, 2)] * 2  # depth 2: two maps
    again = GeofmEncoder("less_vit_tiny", depth=2, rank=2)
    torch.testing.assert_close(again.features(batch), tiny.features(batch))  # seeded init


def test_label_fraction_is_stratified_and_seeded():
    d = data("classification", n=60)
    d.train_labels = np.arange(60) % 3
    idx = label_fraction_indices(d, 0.1, seed=0)
    assert len(idx) == 6 and np.bincount(d.train_labels[idx]).tolist() == [2, 2, 2]
    assert (idx == label_fraction_indices(d, 0.1, seed=0)).all()
    assert not (idx == label_fraction_indices(d, 0.1, seed=1)).all()
    assert len(label_fraction_indices(d, 1.0, 0)) == 60
    with pytest.raises(ValueError, match=r"in \(0, 1\]"):
        label_fraction_indices(d, 0.0, 0)


@pytest.mark.parametrize("protocol", ["linear_probe", "knn", "finetune", "finetune_lora"])
@pytest.mark.parametrize("task", ["classification", "multilabel"])
def test_global_protocols_run_end_to_end(tiny, protocol, task):
    settings = {"epochs": 2, "batch_size": 6} if protocol.startswith("finetune") else {}
    if protocol == "linear_probe":
        settings = {"epochs": 20, "lrs": [0.01, 0.1]}
    out = run_protocol(protocol, data(task), tiny, seed=0, settings=settings)
    name = "top1" if task == "classification" else "micro_map"
    assert out.test.name == out.val.name == name
    assert 0.0 <= out.test.value <= 100.0 and len(out.test.per_class) == 3
    if protocol == "finetune_lora":
        assert 0 < out.settings["encoder_trainable"] < sum(p.numel() for p in tiny.parameters())
    if protocol == "linear_probe":
        assert out.settings["lr"] in (0.01, 0.1)


def test_linear_probe_learns_separable_features_and_picks_lr_on_val():
    g = torch.Generator().manual_seed(0)

    def part(n):
        y = torch.arange(n) % 3
        x = torch.randn(n, 16, generator=g)
        x[:, 0] += 4.0 * y  # one informative feature among noise
        return x, y

    out = linear_probe(
        part(600), part(60), part(60), "classification", 3, lrs=(1e-6, 0.1), epochs=50
    )
    assert out.test.value > 90.0 and out.settings["lr"] == 0.1  # 1e-6 barely moves
    assert out.val.value > 90.0


@pytest.mark.parametrize(
    "protocol,cache",
    [("upernet_frozen", False), ("upernet_frozen", True), ("upernet_finetune", False)],
)
def test_segmentation_protocols_run_end_to_end(tiny, protocol, cache):
    before = {k: v.clone() for k, v in tiny.state_dict().items()}
    out = run_protocol(
        protocol,
        data("segmentation", crop=32),
        tiny,
        seed=0,
        settings={"epochs": 2, "batch_size": 4, "channels": 16, "cache_features": cache},
    )
    assert out.settings["cached_features"] is cache
    assert out.test.name == "miou" and 0.0 <= out.test.value <= 100.0
    assert out.settings["encoder_trainable"] == (
        0 if protocol == "upernet_frozen" else sum(p.numel() for p in tiny.parameters())
    )
    for k, v in tiny.state_dict().items():  # the caller's encoder is never modified
        torch.testing.assert_close(v, before[k])


def test_protocol_task_mismatch_and_band_errors(tiny):
    assert applicable("knn", "multilabel") and not applicable("knn", "segmentation")
    with pytest.raises(ValueError, match="does not apply to segmentation"):
        run_protocol("knn", data("segmentation"), tiny)
    with pytest.raises(ValueError, match="unknown protocol"):
        applicable("svm", "classification")
    with pytest.raises(ValueError, match="cache_features needs a frozen encoder"):
        run_protocol(
            "upernet_finetune", data("segmentation"), tiny, settings={"cache_features": True}
        )
    timm_enc = TimmEncoder("resnet18", bands=["B04", "B11"], wavelengths=[664.6, 1613.7])
    with pytest.raises(BandMatchError, match="B11"):
        run_protocol("knn", data("classification"), timm_enc)


def test_feature_cache_is_per_encoder_and_dataset_object(tiny):
    cache = {}
    first = data("classification")
    run_protocol("knn", first, tiny, settings={"ks": [1]}, feature_cache=cache)
    other = data("classification")  # same name, other object (another variant of the data)
    other.test = Synthetic(6, "classification", seed=7)
    run_protocol("knn", other, tiny, settings={"ks": [1]}, feature_cache=cache)
    feats = [entry[2]["test"][0] for entry in cache.values()]
    assert len(feats) == 2 and not torch.equal(feats[0], feats[1])
    tiny.train()
    run_protocol("linear_probe", data("classification"), tiny, settings={"min_steps": 5})
    assert tiny.training  # feature extraction restored the caller's mode
    tiny.eval()


def test_linear_probe_records_the_epochs_it_ran():
    x, y = torch.randn(10, 4), torch.arange(10) % 2
    out = linear_probe((x, y), (x, y), (x, y), "classification", 2, epochs=3, min_steps=50)
    assert out.settings["epochs"] == 3 and out.settings["epochs_run"] == 50  # 1 step/epoch


def test_metrics_refuse_negative_ids():
    from gfm_bench.metrics import top1

    with pytest.raises(ValueError, match="outside 0..2"):
        top1([0, 1], [0, -1], 3)


@pytest.mark.parametrize("model", ["joint_vit_tiny", "grouped_vit_tiny", "stacked_vit_tiny"])
def test_every_baseline_gives_features_and_maps(model):
    extra = {"in_chans": 4} if model.startswith("stacked") else {}
    enc = GeofmEncoder(model, depth=1, **extra)
    batch = {
        "image": torch.rand(2, 4, 32, 32),
        "wavelengths": torch.tensor(S2_WL),
        "gsd": torch.tensor([10.0, 10.0]),
        "bands": tuple(S2),
    }
    assert enc.features(batch).shape == (2, 192)
    assert enc.feature_maps(batch)[0].shape == (2, 192, 2, 2)


def test_a_pixel_classifier_is_not_an_encoder():
    with pytest.raises(ValueError, match="not an encoder"):
        GeofmEncoder("lola_specvit", bands=30)
