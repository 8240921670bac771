"""Shared pytest fixtures."""
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path of ../shared/data, or skip the test where a fresh clone has none."""
    if not (SHARED_DATA / "fundus").is_dir():
        pytest.skip("../shared/data is not present (fresh clone): test needs the shared fundus images")
    return SHARED_DATA


@pytest.fixture(scope="session")
def retina_bgr():
    """scikit-image's CC0 fundus photograph (1411x1411) as a BGR uint8 array."""
    import cv2
    from skimage import data

    return cv2.cvtColor(data.retina(), cv2.COLOR_RGB2BGR)


@pytest.fixture
def api():
    """An initialised local StreamManagerApi, all streams destroyed afterwards."""
    from mxlocal import StreamManagerApi as sm

    api = sm.StreamManagerApi()
    api.InitManager()
    yield api
    api.DestroyAllStreams()
