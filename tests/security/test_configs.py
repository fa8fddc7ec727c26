"""Configurations name no code to run: a torchgeo dataset class path must be a dataset
class, and a pixel recipe holds plain values only (it is saved with every model)."""

from __future__ import annotations

import datetime

import pytest

from geofm.data.torchgeo_io import import_class
from geofm.tasks.pixel_protocol import RecipeError, load_recipe


def test_a_dataset_class_path_must_name_a_dataset_class():
    from torch.utils.data import Dataset

    assert issubclass(import_class("torchgeo.datasets.EuroSAT"), Dataset)
    for path in ("subprocess.run", "subprocess.Popen", "os.system", "builtins.eval"):
        with pytest.raises(ValueError, match=rf"'{path}' is not a dataset class"):
            import_class(path)


def test_a_recipe_value_a_model_file_cannot_hold_is_refused_at_load(tiny_lola_recipe):
    tiny_lola_recipe["scene"]["cube_key"] = datetime.date(2026, 12, 6)   # YAML reads dates
    with pytest.raises(RecipeError, match=r"recipe.scene.cube_key is a datetime.date"):
        load_recipe(tiny_lola_recipe)
