"""Configurations name no code to run: a torchgeo dataset class path must be a dataset
class, and a pixel recipe holds plain values only (it is saved with every model)."""

from __future__ import annotations

import datetime

import pytest

from geofm.data.torchgeo_io import import_class
from geofm.tasks.pixel_recipe import RecipeError, load_recipe


def test_a_dataset_class_path_must_name_a_dataset_class():
    from torch.utils.data import Dataset

    assert issubclass(import_class("torchgeo.datasets.EuroSAT"), Dataset)
    for path in ("subprocess.run", "subprocess.Popen", "os.system", "builtins.eval"):
        with pytest.raises(ValueError, match=rf"'{path}' is not a dataset class"):
            import_class(path)


def test_a_recipe_value_a_model_file_cannot_hold_is_refused_at_load(tiny_lola_recipe, tmp_path):
    when = datetime.date(2026, 12, 6)
    # a typed key refuses it ...
    with pytest.raises(RecipeError, match=r'(?s)"scene.cube_key".*datetime.date'):
        load_recipe({**tiny_lola_recipe, "scene": {**tiny_lola_recipe["scene"], "cube_key": when}})
    # ... and so does a free-form one (the architecture's kwargs), before any training
    model = {
        **tiny_lola_recipe["model"],
        "kwargs": {**tiny_lola_recipe["model"]["kwargs"], "when": when},
    }
    with pytest.raises(RecipeError, match=r"recipe.model.kwargs.when is a datetime.date"):
        load_recipe({**tiny_lola_recipe, "model": model})
    # a recipe file's dates are read as text
    path = tmp_path / "recipe.yaml"
    path.write_text("scene: {card: salinas_a, cube_key: 2026-12-06}\n")
    assert load_recipe(path).scene["cube_key"] == "2026-12-06"
