"""FIRE protocol: ground-truth parsing, pair errors, AUC, summary lines, pair list."""
import json

import numpy as np
import pytest

from superretina.fire.protocol import (PairRow, category_auc, list_pairs, load_control_points,
                                       pair_error, summarise)


def _write_gt(path, rows):
    path.write_text("".join(" ".join(str(v) for v in r) + "\n" for r in rows))


# --------------------------------------------------------------------------- ground truth
def test_load_control_points_columns(tmp_path):
    p = tmp_path / "control_points_S01_1_2.txt"
    _write_gt(p, [[1.5, 2, 3, 4], [10, 20, 30, 40]])
    ref, qry = load_control_points(p)
    np.testing.assert_array_equal(ref, [[1.5, 2], [10, 20]])
    np.testing.assert_array_equal(qry, [[3, 4], [30, 40]])
    assert ref.dtype == np.float64 and ref.shape == (2, 2)


@pytest.mark.parametrize("content, words", [
    ("1 2 3\n", "3 columns"),
    ("1 2 3 four\n", "not numeric"),
    ("", "empty"),
    ("\n  \n", "empty"),
    ("1 2 3 nan\n", "non-finite"),
])
def test_load_control_points_malformed(tmp_path, content, words):
    p = tmp_path / "control_points_X01_1_2.txt"
    p.write_text(content)
    with pytest.raises(ValueError) as e:
        load_control_points(p)
    assert str(p) in str(e.value) and words in str(e.value)


# --------------------------------------------------------------------------- pair error
def test_pair_error_known_homography():
    q = np.array([[0, 0], [10, 0], [0, 10], [10, 10]], float)
    H = np.array([[1, 0, 3], [0, 1, 4], [0, 0, 1]], float)   # shift (3, 4): distance 5 to q
    ref = q.copy()
    ref[3] += [39, 52]          # last point: mapped to q + (3, 4), so (36, 48) away -> 60 px
    e = pair_error(H, q, ref, inlier_rate=0.5)
    assert e.median == pytest.approx(5.0) and e.max == pytest.approx(60.0)
    assert e.mean == pytest.approx((5 * 3 + 60) / 4)
    assert e.status == "inaccurate"                            # max > 50
    ref_ok = q + [3, 4]
    assert pair_error(H, q, ref_ok, 0.5) == pair_error(H, q, ref_ok, 0.5)
    assert pair_error(H, q, ref_ok, 0.5).status == "acceptable"
    assert pair_error(H, q, ref_ok, 0.5).mean == pytest.approx(0.0)
    # median > 20 with max <= 50 is inaccurate too
    far = q + [21 + 3, 4]
    assert pair_error(H, q, far, 0.5).status == "inaccurate"


def test_pair_error_failed():
    q = np.zeros((10, 2))
    for H, rate in [(None, 1.0), (np.eye(3), 0.0), (np.eye(3), 9e-7), (np.full((3, 3), np.nan), 1.0)]:
        e = pair_error(H, q, q, rate)
        assert e.status == "failed" and e.mean == e.median == e.max == 1e6


# --------------------------------------------------------------------------- AUC
def test_category_auc_hand_computed():
    # Over t = 1..25: 0.5 < t for all 25 thresholds; 3.2 < t for t = 4..25 (22 thresholds);
    # 30 and 1e6 never. AUC = (25 + 22) / (4 pairs * 25 thresholds) = 47 / 100 = 0.47.
    assert category_auc([0.5, 3.2, 30, 1e6]) == pytest.approx(0.47)
    # Strict '<': an error of exactly 1 px misses t = 1 -> 24 / 25.
    assert category_auc([1.0]) == pytest.approx(0.96)
    with pytest.raises(ValueError):
        category_auc([])


# --------------------------------------------------------------------------- summary
def _fire_like_rows():
    rows = [PairRow(f"S{i:02d}", "S", 0.5, "acceptable") for i in range(1, 72)]           # AUC 1
    rows += [PairRow(f"P{i:02d}", "P", 3.2, "acceptable") for i in range(1, 49)]          # 22/25
    rows += [PairRow(f"A{i:02d}", "A", 30.0 if i <= 2 else 0.5, "inaccurate" if i <= 2 else "acceptable")
             for i in range(1, 15)]                                                        # 12/14
    return rows


def test_summary_lines_exact_format():
    s = summarise(_fire_like_rows())
    # 2 inaccurate of 133 = 1.5037 % -> "1.50%"; S 1.000, P 0.880, A 12/14 = 0.857,
    # mAUC = (1 + 0.88 + 0.857142...) / 3 = 0.912380...
    assert s.summary_lines() == ["Failed:0.00%, Inaccurate:1.50%, Acceptable:98.50%",
                                 "S: 1.000, P: 0.880, A: 0.857, mAUC: 0.912"]
    assert s.is_full_fire and s.note is None
    assert s.counts == {"S": 71, "P": 48, "A": 14}
    assert s.categories_present == ["S", "P", "A"]
    json.dumps(s.to_dict())


def test_summary_missing_category_and_errors():
    rows = [PairRow("S01", "S", 0.5, "acceptable"), PairRow("S02", "S", 1e6, "failed", "no homography"),
            {"pair": "A01", "category": "A", "mean_error": "2.5", "status": "error",
             "reason": "image missing: x"},
            {"pair": "A02", "category": "A", "mean_error": "2.5", "status": "acceptable"}]
    s = summarise(rows)
    assert s.n_failed == 2 and s.n_acceptable == 2
    assert s.errors == [{"pair": "A01", "reason": "image missing: x"}]
    # S: (25 + 0) / 50 = 0.5; A: the error row counts as 1e6 -> (0 + 23) / 50 = 0.46.
    assert s.summary_lines() == ["Failed:50.00%, Inaccurate:0.00%, Acceptable:50.00%",
                                 "S: 0.500, P: n/a, A: 0.460, mAUC: 0.480"]
    assert s.categories_present == ["S", "A"] and "P absent" in s.note
    assert not s.is_full_fire and "not the full FIRE" in s.set_line()


# --------------------------------------------------------------------------- pair list
def _fire_tree(root, stems, exts=None):
    (root / "Images").mkdir(parents=True)
    (root / "Ground Truth").mkdir()
    for stem in stems:
        ext = (exts or {}).get(stem, ".jpg")
        for side in (1, 2):
            (root / "Images" / f"{stem}_{side}{ext}").write_bytes(b"x")
        _write_gt(root / "Ground Truth" / f"control_points_{stem}_1_2.txt", [[1, 2, 3, 4]] * 10)


def test_list_pairs_real_fire_layout(tmp_path):
    _fire_tree(tmp_path, ["S01", "P37", "A02", "P01"], exts={"A02": ".png"})
    pairs = list_pairs(tmp_path)
    assert [p.name for p in pairs] == ["A02", "P01", "S01"]          # P37 excluded, sorted
    a = pairs[0]
    assert a.category == "A" and a.query_path.name == "A02_2.png" and a.refer_path.name == "A02_1.png"
    assert a.gt_path.name == "control_points_A02_1_2.txt"
    assert "P37" in [p.name for p in list_pairs(tmp_path, exclude_p37=False)]


def test_list_pairs_synthetic_keeps_p37_and_lists_missing_gt(tmp_path):
    _fire_tree(tmp_path, ["P37", "S01"])
    (tmp_path / "synthetic.json").write_text("{}")
    (tmp_path / "Ground Truth" / "control_points_S01_1_2.txt").unlink()
    pairs = list_pairs(tmp_path)
    assert [p.name for p in pairs] == ["P37", "S01"]
    assert not pairs[1].gt_path.exists()        # listed so that the runner reports it


def test_list_pairs_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        list_pairs(tmp_path / "nope")
    (tmp_path / "Images").mkdir()
    with pytest.raises(FileNotFoundError, match="Ground Truth"):
        list_pairs(tmp_path)
    (tmp_path / "Ground Truth").mkdir()
    with pytest.raises(ValueError, match="no pairs"):
        list_pairs(tmp_path)
