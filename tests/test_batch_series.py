"""`batch` with a `series` column: one series per value, the pair batch's store, resume, setup
guard and report, on the local engine and on Ray (skipped without the cluster extra).

Inputs: two synthetic series (three visits of scikit-image's retina; two visits of its mirror
image, another "eye"), small images and a fast configuration, plus a series with a missing file.
"""
import csv
import json

import cv2
import numpy as np
import pytest

from superretina.batch.cli import main as batch_main
from superretina.fire.series_synth import make_series
from superretina.fire.synth import load_source
from superretina.series.batch import read_series_jobs
from superretina.batch.pairs import BatchInputError
from superretina.batch.store import StoreError
from superretina.transform import transform_from_json
from tests.batch_fixtures import FAST_CONFIG, read_summary
from tests.model_fixtures import run_cli

SIZE = 384


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    d = tmp_path_factory.mktemp("cohort")
    _, img = load_source("skimage:retina")
    make_series(d / "A", img, "visits", 3, SIZE, seed=0)
    make_series(d / "B", cv2.flip(img, 1), "visits", 2, SIZE, seed=1)
    (d / "fast.yaml").write_text(FAST_CONFIG)
    with open(d / "list.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["series", "image", "visit"])
        for sid, n in (("A", 3), ("B", 2)):
            for k in range(n):
                w.writerow([sid, f"{sid}/views/{k:02d}.jpg", k + 1])
        w.writerow(["C", "A/views/00.jpg", 1])
        w.writerow(["C", "nothere.jpg", 2])
    return d


def _series_json(out, sid):
    return json.loads((out / "series" / sid / "series.json").read_text())


def test_series_batch_local_store_resume_and_report(cohort, capsys):
    out = cohort / "local"
    args = [str(cohort / "list.csv"), "--out", str(out), "--config", str(cohort / "fast.yaml"), "--no-progress",
            "--runtime", "local", "--thumbnails"]
    assert batch_main(args) == 0
    assert "3 series: 2 registered, 0 failed, 1 error" in capsys.readouterr().out
    rows = {r["id"]: r for r in read_summary(out / "summary.csv")}
    assert rows["A"]["status"] == "registered" and rows["A"]["in_frame"] == "3" and rows["A"]["pairs_registered"] == "3"
    assert rows["B"]["status"] == "registered" and rows["B"]["images"] == "2"
    assert rows["C"]["status"] == "error" and "nothere.jpg" in rows["C"]["reason"]
    for sid in ("A", "B"):
        folder = out / "series" / sid
        for name in ("series.json", "montage.png", "flicker.html", "thumb_montage.jpg", "thumb_flicker.jpg"):
            assert (folder / name).is_file(), name
        assert _series_json(out, sid)["batch"]["id"] == sid
    # the report: one row per series, linking its montage and flicker page
    page = (out / "index.html").read_text()
    assert '"unit": "series"' in page
    data = (out / "report" / "rows-000.js").read_text()
    assert "series/A/flicker.html" in data and "series/A/montage.png" in data
    # a rerun reuses the finished series and retries the error
    assert batch_main(args) == 0
    assert "2 reused" in capsys.readouterr().out
    assert json.loads((out / "summary.json").read_text())["this_run"]["reused_series"] == 2
    # another setup is refused, naming what changed
    (cohort / "other.yaml").write_text(FAST_CONFIG + "series:\n  loss_scale: 2.0\n")
    with pytest.raises(StoreError, match="config"):
        batch_main([*args[:4], str(cohort / "other.yaml"), *args[5:]])


def test_a_series_list_with_one_image_is_refused(tmp_path):
    (tmp_path / "l.csv").write_text("series,image\nX,a.jpg\n")
    with pytest.raises(BatchInputError, match="series 'X' has 1 image"):
        read_series_jobs(tmp_path / "l.csv")
    (tmp_path / "l.csv").write_text("series,image\n../up,a.jpg\n../up,b.jpg\n")
    with pytest.raises(BatchInputError, match="line 2: series '../up'"):
        read_series_jobs(tmp_path / "l.csv")


def test_series_batch_on_ray_matches_local(cohort):
    pytest.importorskip("ray", reason="the Ray engine needs the cluster extra: pip install -e '.[cluster]'")
    local, ray_out = cohort / "local", cohort / "ray"
    if not (local / "summary.csv").is_file():
        pytest.skip("needs the local run of test_series_batch_local_store_resume_and_report")
    proc = run_cli("batch", cohort / "list.csv", "--out", ray_out, "--config", cohort / "fast.yaml", "--engine", "ray",
                   "--jobs", "2", "--thumbnails", "--no-progress", "--runtime", "local")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    lr = {r["id"]: r for r in read_summary(local / "summary.csv")}
    rr = {r["id"]: r for r in read_summary(ray_out / "summary.csv")}
    assert {k: r["status"] for k, r in rr.items()} == {k: r["status"] for k, r in lr.items()}
    pts = np.array([[50.0, 60.0], [190.0, 200.0], [300.0, 320.0]])
    for sid in ("A", "B"):
        a, b = _series_json(local, sid), _series_json(ray_out, sid)
        assert a["reference"] == b["reference"]
        for ia, ib in zip(a["images"], b["images"]):
            np.testing.assert_allclose(transform_from_json(ib["transform"]).apply(pts),
                                       transform_from_json(ia["transform"]).apply(pts), atol=1e-6)
        # the files came back from the workers, aligned/ included
        assert sorted(p.name for p in (ray_out / "series" / sid / "aligned").iterdir()) == sorted(
            p.name for p in (local / "series" / sid / "aligned").iterdir())
    assert rr["A"]["setup_sha"] == lr["A"]["setup_sha"]
