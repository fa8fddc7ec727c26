import pytest
from fresh_imports import imported_by

import geofm.tasks


def test_results_reader_does_not_import_lightning():
    # pixel_report.py only reads result CSVs; importing Lightning cost it about 7 s of start-up
    assert imported_by("geofm.tasks.pixel_results", ["lightning", "geofm.tasks.base"]) == []


def test_package_names_resolve_on_use():
    from geofm.tasks.base import BaseTask, warmup_cosine
    from geofm.tasks.mae import MAEPretrainTask

    assert geofm.tasks.BaseTask is BaseTask
    assert geofm.tasks.MAEPretrainTask is MAEPretrainTask
    assert geofm.tasks.warmup_cosine is warmup_cosine
    assert all(hasattr(geofm.tasks, name) for name in geofm.tasks.__all__)


def test_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="NoSuchTask"):
        geofm.tasks.NoSuchTask  # noqa: B018
