from fresh_imports import imported_by


def test_models_import_neither_data_nor_tasks_nor_lightning():
    assert imported_by("geofm.models", ["geofm.data", "geofm.tasks", "lightning", "rasterio"]) == []
