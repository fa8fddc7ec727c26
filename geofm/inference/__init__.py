"""Large-scene inference: sliding-window prediction to Cloud-Optimised GeoTIFFs and xarray.

>>> from geofm.inference import load_predictor, predict
>>> predictor = load_predictor("eurosat.ckpt")                       # doctest: +SKIP
>>> result = predict(predictor, "S2_IMG_DATA/", "map.tif", stride=32)  # doctest: +SKIP
>>> result.labels            # (y, x) class ids on the scene's CRS  # doctest: +SKIP

Scenes are read window by window (:mod:`geofm.inference.sources`), tiles laid out and
blended by :mod:`geofm.inference.tiling`, run through a predictor
(:mod:`geofm.inference.predictors`) and written block by block
(:mod:`geofm.inference.writers`), so memory is bounded whatever the scene's size.
"""

from geofm.inference.engine import NotGeoreferencedWarning, Prediction, choose_block, predict
from geofm.inference.predictors import (
    CentrePixelPredictor,
    DensePredictor,
    Predictor,
    ScenePredictor,
    load_predictor,
)
from geofm.inference.sources import ArraySource, BandMatchError, FileSource, open_source
from geofm.inference.tiling import TilePlan, plan_tiles

__all__ = [
    "ArraySource",
    "BandMatchError",
    "CentrePixelPredictor",
    "DensePredictor",
    "FileSource",
    "NotGeoreferencedWarning",
    "Prediction",
    "Predictor",
    "ScenePredictor",
    "TilePlan",
    "choose_block",
    "load_predictor",
    "open_source",
    "plan_tiles",
    "predict",
]
