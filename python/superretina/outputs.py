"""Files a registration leaves behind: result.json and the three pictures."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from . import viz
from .parallel import run_all
from .register import RegistrationResult
from .transform import HomographyTransform, inverse_maps, residual_stats

PARALLEL_MAX_PIXELS = 12_000_000


def _stage_json(stage) -> dict:
    hom = stage.homography
    return {"matches": int(len(stage.matches)), "inliers": int(hom.num_inliers), "estimator": hom.method,
            "inlier_rate": round(float(hom.inlier_rate), 6),
            "homography": None if hom.H is None else hom.H.tolist(), "failure_reason": hom.failure_reason}


def final_matches(res: RegistrationResult) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(query_xy (M,2), refer_xy (M,2), inlier (M,)) of the final pass, in original pixels."""
    st = res.final
    q = res.final_query_xy[st.matches[:, 0]] if len(st.matches) else np.zeros((0, 2))
    r = res.refer.xy[st.matches[:, 1]] if len(st.matches) else np.zeros((0, 2))
    return q, r, st.homography.inlier_mask.astype(bool)


def result_json(res: RegistrationResult, query_path, refer_path, model: str, pipeline: str, runtime: str) -> dict:
    q, r, inl = final_matches(res)
    passes = [{"name": "first", **_stage_json(res.first)}]
    if res.second is not None:
        passes.append({"name": "matching trick", **_stage_json(res.second)})
    n = len(inl)
    return {
        "status": res.status,
        "reason": res.reason,
        "query": str(query_path), "refer": str(refer_path),
        "query_size": {"height": res.query_size[0], "width": res.query_size[1]},
        "refer_size": {"height": res.refer_size[0], "width": res.refer_size[1]},
        "homography": None if res.H is None else res.H.tolist(),
        "homography_direction": "query -> reference, original pixels",
        **transform_json(res, q, r),
        "keypoints": {"query": res.query.xy.round(2).tolist(), "refer": res.refer.xy.round(2).tolist()},
        "num_keypoints": {"query": len(res.query.xy), "refer": len(res.refer.xy)},
        "matches": {"query_xy": q.round(2).tolist(), "refer_xy": r.round(2).tolist(), "inlier": inl.tolist()},
        "num_matches": n, "num_inliers": int(inl.sum()),
        "inlier_rate": round(float(inl.sum() / n), 6) if n else 0.0,
        "passes": passes,
        "seconds": {k: round(v, 4) for k, v in res.seconds.items()},
        "model": model, "pipeline": pipeline, "runtime": runtime,
    }


def transform_json(res: RegistrationResult, q: np.ndarray, r: np.ndarray) -> dict:
    """``transform`` (the returned model: model, direction, parameters, normalisation), how it was
    chosen, and the residuals of the final matches under it and under the homography."""
    if res.transform is None or res.H is None:
        return {"transform": None, "transform_choice": None, "residuals": None}
    t = res.transform.transform
    return {"transform": t.to_json(), "transform_choice": res.transform.to_json(),
            "residuals": {"transform": residual_stats(t, q, r),
                          "homography": residual_stats(HomographyTransform(res.H), q, r)}}


def quality_line(info: dict) -> str | None:
    """One line: residuals of the matches under the returned transform (None without one)."""
    res = info.get("residuals")
    if not res:
        return None
    t = res["transform"]
    med = "n/a" if t["median_px"] is None else f"{t['median_px']:.2f} px"
    return (f"{info['transform']['model']}: median residual {med}; within 3/5/10 px "
            f"{100 * t['within_3px']:.0f}/{100 * t['within_5px']:.0f}/{100 * t['within_10px']:.0f}% of matches")


def write_outputs(res: RegistrationResult, query_img, refer_img, out: Path, info: dict, cfg: dict) -> list[Path]:
    """Write result.json and the pictures into ``out``; returns the written paths.

    The pictures are drawn and encoded side by side (``parallel.run_all``): at FIRE size each
    is tens of milliseconds of OpenCV work that releases the GIL. Above ``PARALLEL_MAX_PIXELS``
    they are drawn one after the other, to bound memory.
    """
    out.mkdir(parents=True, exist_ok=True)
    q, r, inl = final_matches(res)
    o = cfg["outputs"]
    jobs = []
    if o["match_result"]:
        status = "registered" if res.status == "registered" else f"FAILED: {res.reason}"
        lines = [f"{status}", f"keypoints {len(res.query.xy)} / {len(res.refer.xy)}   "
                 f"matches {len(inl)}   inliers {int(inl.sum())} ({100 * inl.mean() if len(inl) else 0:.0f}%)"]
        dots = inl
        if quality_line(info):
            lines.append(quality_line(info))
            if res.transform.model != "homography" and len(q):
                # green = within 3 px of the returned transform, so that a well-registered
                # small-overlap pair does not look failed by the homography's 3-px inliers
                dots = np.linalg.norm(res.transform.transform.apply(q) - r, axis=1) <= 3.0
                lines.append(f"green: within 3 px of the {res.transform.model} transform")
        jobs.append(lambda: _save(out / "match_result.jpg", viz.draw_matches(query_img, refer_img, q, r, dots, lines)))
    # The pictures warp with the returned transform (a homography exactly as before; another
    # transform through its inverse maps, computed once for both pictures).
    warp = res.H
    if res.H is not None and res.transform is not None and res.transform.model != "homography" \
            and (o["merged"] or o["checkerboard"]):
        warp = inverse_maps(res.transform.transform, (res.refer_size[1], res.refer_size[0]),
                            (res.query_size[1], res.query_size[0]))
    if res.H is not None and o["merged"]:
        jobs.append(lambda: _save(out / "result.jpg", viz.merged(res.query_equalised, warp, res.refer_equalised)))
    if res.H is not None and o["checkerboard"]:
        jobs.append(lambda: _save(out / "checkerboard.jpg",
                                  viz.checkerboard(query_img, warp, refer_img, o["checkerboard_tiles"])))
    # Side by side up to ~12 MP (FIRE's 2912x2912 is 8.5 MP); larger references draw one picture
    # at a time, since each holds several full-size copies (an 8000x8000 reference: ~200 MB each).
    if refer_img.shape[0] * refer_img.shape[1] <= PARALLEL_MAX_PIXELS:
        written = run_all(*jobs) if jobs else []
    else:
        written = [job() for job in jobs]
    path = out / "result.json"
    path.write_text(json.dumps(info, indent=1))
    written.append(path)
    return written


def _save(path: Path, image: np.ndarray) -> Path:
    if not cv2.imwrite(str(path), image, [cv2.IMWRITE_JPEG_QUALITY, 90]):
        raise OSError(f"{path}: could not write the picture")
    return path
