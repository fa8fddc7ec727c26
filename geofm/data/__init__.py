"""Rasters and cubes in, samples out: readers, cards, transforms, splits, statistics, plots.

The LightningDataModules live in :mod:`geofm.data.datamodules` (not imported here, so that
reading a raster does not import Lightning); plots in :mod:`geofm.data.plot`.
"""

from geofm.data.cards import (
    Band,
    CardNotFoundError,
    DatasetCard,
    SensorCard,
    UnknownBandError,
    list_dataset_cards,
    list_sensors,
    load_dataset_card,
    load_sensor,
)
from geofm.data.datasets import PixelPatchDataset, SceneFolderDataset, read_scene
from geofm.data.hyperspectral import open_cube, open_envi, open_mat, read_label_mat
from geofm.data.readers import iter_windows, open_raster
from geofm.data.sample import (
    IGNORE_INDEX,
    BandMismatchError,
    check_sample,
    collate_samples,
    make_sample,
)
from geofm.data.splits import (
    check_no_leakage,
    cross_validation_folds,
    spatially_disjoint_split,
    stratified_split,
)
from geofm.data.xarray_io import from_xarray, to_xarray

__all__ = [
    "IGNORE_INDEX",
    "Band",
    "BandMismatchError",
    "CardNotFoundError",
    "DatasetCard",
    "PixelPatchDataset",
    "SceneFolderDataset",
    "SensorCard",
    "UnknownBandError",
    "check_no_leakage",
    "check_sample",
    "collate_samples",
    "cross_validation_folds",
    "from_xarray",
    "iter_windows",
    "list_dataset_cards",
    "list_sensors",
    "load_dataset_card",
    "load_sensor",
    "make_sample",
    "open_cube",
    "open_envi",
    "open_mat",
    "open_raster",
    "read_label_mat",
    "read_scene",
    "spatially_disjoint_split",
    "stratified_split",
    "to_xarray",
]
