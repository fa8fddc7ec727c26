import subprocess
import sys


def test_models_import_neither_data_nor_tasks_nor_lightning():
    code = (
        "import sys, geofm.models; "
        "bad = [m for m in sys.modules if m.startswith(('geofm.data', 'geofm.tasks', "
        "'lightning', 'rasterio'))]; print(bad); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
