"""Every protocol on every GFM-Bench dataset, from a generated tree in its real layout.

The trees are tiny (EuroSAT from the bundled real samples, the others synthetic from the
committed generator), the encoder a one-block LESS ViT: this checks that reader, transforms
(the paper's crops and scales), adapter, protocol and metric fit together for each dataset.
"""

from __future__ import annotations

import warnings

import pytest

from gfm_bench.datasets import UnverifiedLayoutWarning, load_bench_data
from gfm_bench.encoders import GeofmEncoder
from gfm_bench.generate import GENERATORS, generate
from gfm_bench.protocols import PROTOCOLS, applicable, run_protocol

CASES = []
for _name, _layouts in GENERATORS.items():
    for _layout in _layouts:
        task = {
            "eurosat": "classification",
            "so2sat": "classification",
            "bigearthnet": "multilabel",
        }.get(_name, "segmentation")
        CASES += [(_name, _layout, p) for p in PROTOCOLS if applicable(p, task)]

SETTINGS = {
    "linear_probe": {"min_steps": 20, "epochs": 2},
    "knn": {"ks": [3]},
    "finetune": {"epochs": 1, "batch_size": 8},
    "finetune_lora": {"epochs": 1, "batch_size": 8},
    "upernet_frozen": {"epochs": 1, "batch_size": 8, "channels": 16},
    "upernet_finetune": {"epochs": 1, "batch_size": 8, "channels": 16},
}


@pytest.fixture(scope="module")
def encoder():
    return GeofmEncoder("less_vit_tiny", depth=1, rank=2)


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    made = {}

    def get(name, layout, **kwargs):
        key = (name, layout, tuple(sorted(kwargs.items())))
        if key not in made:
            root = generate(name, tmp_path_factory.mktemp(f"{name}_{layout}"), layout=layout)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UnverifiedLayoutWarning)
                made[key] = load_bench_data(name, root, **kwargs)
        return made[key]

    return get


@pytest.mark.parametrize("name, layout, protocol", CASES)
def test_protocol_runs_on_generated_tree(bench, encoder, name, layout, protocol):
    data = bench(name, layout)
    with warnings.catch_warnings():
        # NLCD-L has no published statistics: they come from its training samples
        warnings.filterwarnings("ignore", "nlcd_l: no normalisation statistics")
        out = run_protocol(
            protocol, data, encoder, seed=0, label_fraction=1.0, settings=SETTINGS[protocol]
        )
    assert (
        out.test.name
        == {"classification": "top1", "multilabel": "micro_map", "segmentation": "miou"}[data.task]
    )
    assert 0.0 <= out.test.value <= 100.0
    assert len(out.test.per_class) == data.num_classes


@pytest.mark.parametrize(
    "name, protocol", [("bigearthnet", "linear_probe"), ("dfc2020", "upernet_frozen")]
)
def test_optical_and_radar_together(bench, encoder, name, protocol):
    data = bench(
        name, GENERATORS[name] and next(iter(GENERATORS[name])), modalities=("optical", "radar")
    )
    assert len(data.bands) == len(data.mean) == data.test[0]["image"].shape[0]
    out = run_protocol(protocol, data, encoder, seed=0, settings=SETTINGS[protocol])
    assert 0.0 <= out.test.value <= 100.0
