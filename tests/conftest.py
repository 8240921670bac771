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


@pytest.fixture
def distill_inputs(retina_bgr, tmp_path):
    """What a short distillation run needs: a folder of two 400-px photographs and a seeded
    random "half" teacher saved as a checkpoint. Returns (folder, teacher net, teacher path,
    the 400-px photograph)."""
    import cv2
    import torch

    from superretina.model.network import SuperRetinaNet, checkpoint_dict

    folder = tmp_path / "photos"
    folder.mkdir()
    small = cv2.resize(retina_bgr, (400, 400), interpolation=cv2.INTER_AREA)
    for name in ("one", "two"):
        cv2.imwrite(str(folder / f"{name}.png"), small)
    torch.manual_seed(4)
    teacher = SuperRetinaNet("half").eval()
    torch.save(checkpoint_dict(teacher), tmp_path / "teacher.pth")
    return folder, teacher, tmp_path / "teacher.pth", small


@pytest.fixture(scope="module")
def demo(retina_bgr):
    """The demo's pair at 700 px: (query, refer, G the true homography, control points)."""
    import cv2

    from superretina.demo import make_pair

    refer = cv2.resize(retina_bgr, (700, 700), interpolation=cv2.INTER_AREA)
    query, G, pts = make_pair(refer)
    return query, refer, G, pts


@pytest.fixture(scope="module")
def session():
    """A default ``superretina.Session`` (shipped model, local runtime), closed afterwards."""
    import superretina

    with superretina.Session() as s:
        yield s
