"""superretina.parallel: side-by-side image jobs."""
import threading

import pytest

from superretina.image_io import ImageReadError, read_pair
from superretina.parallel import pair_map, run_all


def test_results_keep_job_order_and_use_another_thread():
    names = run_all(lambda: threading.current_thread().name, lambda: threading.current_thread().name,
                    lambda: threading.current_thread().name)
    assert names[0] == threading.current_thread().name
    assert all(n.startswith("superretina-images") for n in names[1:])
    assert pair_map(lambda v: v * 2, 3, 4) == (6, 8)


def test_first_error_in_job_order_is_raised_after_all_jobs_ran():
    done = []

    def fail(msg):
        def job():
            done.append(msg)
            raise ValueError(msg)
        return job

    with pytest.raises(ValueError, match="first"):
        run_all(fail("first"), fail("second"), lambda: done.append("ok"))
    assert sorted(done) == ["first", "ok", "second"]


def test_nested_calls_run_inline_instead_of_deadlocking():
    inner = lambda: run_all(lambda: 1, lambda: 2)  # noqa: E731
    assert run_all(inner, inner, inner) == [[1, 2]] * 3


def test_read_pair_names_the_missing_file(tmp_path, retina_bgr):
    import cv2

    good = tmp_path / "good.png"
    cv2.imwrite(str(good), retina_bgr[:64, :64])
    q, r = read_pair(good, good)
    assert q.shape == r.shape == (64, 64, 3)
    with pytest.raises(ImageReadError, match="missing.jpg: file not found"):
        read_pair(good, tmp_path / "missing.jpg")
