"""Synthetic series (fire/series_synth.py): exact correspondences between every two views."""
import csv
import json

import numpy as np
import pytest

from superretina.fire.series_synth import load_truth, make_series, true_map
from superretina.fire.synth import load_source, main as synth_main


@pytest.fixture(scope="module")
def retina():
    return load_source("skimage:retina")[1]


@pytest.mark.parametrize("kind, n", [("visits", 3), ("fields", 4)])
def test_control_points_follow_the_exact_map_both_ways(tmp_path, retina, kind, n):
    truth = make_series(tmp_path / kind, retina, kind, n, 256, seed=3)
    eye, visits, saved = load_truth(tmp_path / kind)
    assert saved == json.loads(json.dumps(truth)) and len(visits) == n
    assert len(truth["pairs"]) == n * (n - 1) // 2
    for p in truth["pairs"]:
        assert 0.0 <= p["overlap"] <= 1.0
        cp = np.asarray(p["control_points"])
        assert cp.shape == (10, 4)
        q, r = visits[p["query"]], visits[p["refer"]]
        np.testing.assert_allclose(true_map(eye, q, r, cp[:, 2:4]), cp[:, 0:2], atol=1e-3)
        np.testing.assert_allclose(true_map(eye, r, q, cp[:, 0:2]), cp[:, 2:4], atol=1e-3)
        assert np.all((cp >= 0) & (cp <= 255))
    rows = list(csv.DictReader(open(tmp_path / kind / "series.csv")))
    assert [r["image"] for r in rows] == [f"views/{k:02d}.jpg" for k in range(n)]
    assert all((tmp_path / kind / r["image"]).is_file() for r in rows)
    if kind == "fields":
        assert [r["field"] for r in rows] == ["F1", "F2", "F3", "F4"]
    else:
        assert [r["visit"] for r in rows] == ["1", "2", "3"]
        lesions = [len(v["appearance"]["lesions"]) for v in truth["views"]]
        assert lesions[0] == 0 and lesions[-1] > lesions[1] > 0       # lesions accumulate over the visits


def test_synth_command_writes_series_and_refuses_a_bad_count(tmp_path, capsys):
    assert synth_main([str(tmp_path / "s"), "--from", "skimage:retina", "--series", "visits", "--views", "2",
                       "--size", "192", "--no-progress"]) == 0
    assert (tmp_path / "s" / "skimage_retina_visits" / "truth.json").is_file()
    assert synth_main([str(tmp_path / "t"), "--from", "skimage:retina", "--series", "visits", "--views", "1"]) == 2
    assert "--views must be at least 2" in capsys.readouterr().err
    assert synth_main([str(tmp_path / "s"), "--from", "skimage:retina", "--series", "visits", "--views", "2"]) == 2
    assert "not empty" in capsys.readouterr().err
