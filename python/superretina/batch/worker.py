"""Registering one pair of a batch: read, register, write result.json and pictures, make its row.

The same function runs in every engine (threads of the local engine, Ray actors), so the same
inputs give the same rows whichever engine ran them. A pair that cannot be read or registered
becomes a row with status ``error`` and its reason; nothing here raises for one bad pair.
"""
from __future__ import annotations

import copy
import os
import shutil
import socket
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from .pairs import PairJob

PICTURE_MODES = ("full", "thumbnails", "none")
THUMBNAILS = {"checkerboard.jpg": "thumb_checkerboard.jpg", "result.jpg": "thumb_result.jpg"}
FAILED_THUMBNAIL = {"match_result.jpg": "thumb_match_result.jpg"}   # what a failed pair's report row shows
VIEW_SIDE_THUMBNAILS = 1024  # px, longest side of the pair view's pictures with --thumbnails (full size otherwise)
H_COLUMNS = [f"h{i}{j}" for i in range(3) for j in range(3)]
# The quadratic transform (superretina.transform.QuadraticTransform): coefficients of the basis
# 1, x, y, x², xy, y² for the normalised reference x (qx_*) and y (qy_*), and the normalisation.
QUADRATIC_COLUMNS = ([f"q{axis}_{term}" for axis in "xy" for term in ("1", "x", "y", "xx", "xy", "yy")]
                     + ["q_query_cx", "q_query_cy", "q_query_scale", "q_refer_cx", "q_refer_cy", "q_refer_scale"])
# Header entries of DICOM photographs (result.json ``dicom``), empty for other files.
DICOM_COLUMNS = [f"{side}_{key}" for side in ("query", "refer")
                 for key in ("sop_instance_uid", "study_date", "laterality")]
ROW_COLUMNS = (["id", "query", "refer", "status", "reason", "confidence", "transform", *H_COLUMNS, *QUADRATIC_COLUMNS,
                "keypoints_query", "keypoints_refer", "matches", "inliers", "inlier_rate_pct",
                "residual_median_px", "within_3px_pct", "within_5px_pct", "within_10px_pct", "seconds",
                *DICOM_COLUMNS])


@dataclass
class PairOutput:
    """What a worker hands back: the summary row and the pair folder's files.

    ``files`` maps file name → bytes when the worker wrote into a scratch folder (Ray), and is
    empty when it wrote straight into ``dest`` (local engine).
    """

    row: dict
    files: dict = field(default_factory=dict)


def _row(job: PairJob, status: str, reason: str, seconds: float) -> dict:
    row = {c: "" for c in ROW_COLUMNS}
    row.update(id=job.id, query=job.query_text, refer=job.refer_text, status=status,
               reason=" ".join(str(reason or "").split()), seconds=f"{seconds:.4f}")
    return row


def row_from_info(job: PairJob, info: dict, seconds: float) -> dict:
    """Summary row of a registered or failed pair from its result.json content.

    ``transform`` is the returned model, ``h00``…``h22`` the homography (always, when registered),
    the ``q*`` columns the quadratic when that is what was returned; the residual columns are the
    final matches' distances under the returned transform (``api.Registration.quality``).
    """
    from ..api import Registration

    reg = Registration(info)
    row = _row(job, reg.status, reg.reason or "", seconds)
    row["confidence"] = f"{reg.confidence:.4f}"
    if reg.homography is not None:
        row.update(zip(H_COLUMNS, (repr(float(v)) for v in reg.homography.ravel())))
    if reg.transform is not None:
        row["transform"] = reg.transform.model
        t = reg.transform.to_json()
        if t["model"] == "quadratic":
            n = t["normalisation"]
            values = [*np.ravel(t["parameters"]), *n["query"]["centre"], n["query"]["scale"],
                      *n["reference"]["centre"], n["reference"]["scale"]]
            row.update(zip(QUADRATIC_COLUMNS, (repr(float(v)) for v in values)))
    q = reg.quality

    def pct(x):
        return "" if x is None else f"{100 * x:.3f}"

    row.update(keypoints_query=q["num_keypoints_query"], keypoints_refer=q["num_keypoints_refer"],
               matches=q["num_matches"], inliers=q["num_inliers"], inlier_rate_pct=pct(q["inlier_rate"]),
               residual_median_px="" if q["residual_median_px"] is None else f"{q['residual_median_px']:.4f}",
               within_3px_pct=pct(q["within_3px"]), within_5px_pct=pct(q["within_5px"]),
               within_10px_pct=pct(q["within_10px"]))
    for side, fields in (info.get("dicom") or {}).items():
        row.update({f"{side}_{k}": v for k, v in (fields or {}).items() if f"{side}_{k}" in DICOM_COLUMNS})
    return row


def _pictures_config(cfg: dict, pictures: str) -> dict:
    """The full-size pictures of a picture mode: all (full); the matches picture only, for the pair
    view's scaled copy (thumbnails: removed after); none."""
    if pictures == "full":
        return cfg
    cfg = copy.deepcopy(cfg)
    for k in ("merged", "checkerboard") if pictures == "thumbnails" else ("match_result", "merged", "checkerboard"):
        cfg["outputs"][k] = False
    return cfg


def _failed_thumbnail(folder: Path) -> None:
    """A failed pair's report thumbnail: its matches picture (the registered ones' are drawn by thumbnails.py)."""
    from ..outputs import save_jpeg
    from ..thumbnails import THUMB_QUALITY, THUMB_SIDE, shrunk

    for full, thumb in FAILED_THUMBNAIL.items():
        img = cv2.imread(str(folder / full)) if (folder / full).is_file() else None
        if img is not None:   # save_jpeg writes through write_file: never follows a link
            save_jpeg(folder / thumb, shrunk(img, THUMB_SIDE / max(img.shape[:2])), THUMB_QUALITY)


def process_pair(app, job: PairJob, pictures: str = "full", dest: Path | None = None) -> PairOutput:
    """Register ``job`` with an opened App and write its folder's files.

    Parameters
    ----------
    app : superretina.app.App
        Opened once per worker; thread-safe, so several pairs may be in flight.
    job : PairJob
    pictures : {'full', 'thumbnails', 'none'}
        Full-size pictures plus thumbnails, thumbnails only, or result.json only. With pictures,
        the pair's view page too (``report.pair_view``: full resolution, or scaled to
        ``VIEW_SIDE_THUMBNAILS`` with thumbnails).
    dest : Path, optional
        Folder to write into (emptied first). None: a scratch folder whose files come back as
        bytes in ``PairOutput.files`` (for workers on other machines).

    Returns
    -------
    PairOutput
        ``row`` has the ``ROW_COLUMNS`` keys; ``seconds`` is the pair's wall time in this worker
        (reading, registering, pictures). A registered or failed pair's row also has
        ``inputs_sha``: the key of the bytes that were decoded (``fingerprint.read_inputs_sha``).
    """
    from ..image_io import ImageReadError
    from ..outputs import result_json, write_outputs
    from ..report.pair_view import write_pair_view
    from ..thumbnails import write_thumbnails
    from .fingerprint import read_inputs_sha

    t0 = time.perf_counter()
    scratch = None
    if dest is None:
        scratch = Path(tempfile.mkdtemp(prefix="superretina-pair-"))
        folder = scratch
    else:
        folder = Path(dest)
        shutil.rmtree(folder, ignore_errors=True)
    try:
        try:
            # JPEGs go through the pipeline's decode stream (input.stream_decode): while this pair
            # waits for its maps, the stream decodes/enhances the other pairs in flight.
            res = app.registrar.register_files(job.query, job.refer, images=pictures != "none")
        except (ImageReadError, OSError) as exc:
            return PairOutput(_row(job, "error", str(exc), time.perf_counter() - t0))
        except Exception as exc:  # noqa: BLE001 - one pair's failure must not stop the batch
            return PairOutput(_row(job, "error", f"{type(exc).__name__}: {exc}", time.perf_counter() - t0))
        # the key of the bytes decoded, not of the files as they are when the row is written
        key = read_inputs_sha([(job.query, res.input_stats[0]), (job.refer, res.input_stats[1])])
        try:
            info = result_json(res, job.query, job.refer, app.provenance)
            info["id"] = job.id
            info["worker"] = f"{socket.gethostname()}:{os.getpid()}"
            cfg = _pictures_config(app.config, pictures)
            write_outputs(res, res.query_image, res.refer_image, folder, info, cfg)
            if pictures != "none":
                # the pair view first: with --thumbnails it keeps a scaled copy of the matches picture
                write_pair_view(folder, info, res.query_image, res.refer_image,
                                None if pictures == "full" else VIEW_SIDE_THUMBNAILS, title=f"{job.id}: {info['status']}")
                # drawn at their own size, not shrunk from the full-size files (thumbnails.py)
                o = app.config["outputs"]
                write_thumbnails(res, res.query_image, res.refer_image, folder, o["merged"], o["checkerboard"],
                                 o["checkerboard_tiles"])
                if info["status"] != "registered":
                    _failed_thumbnail(folder)
                if pictures == "thumbnails":
                    (folder / "match_result.jpg").unlink(missing_ok=True)
        except Exception as exc:  # noqa: BLE001 - one pair's failure must not stop the batch
            shutil.rmtree(folder, ignore_errors=True)
            return PairOutput(_row(job, "error", f"{type(exc).__name__}: {exc}", time.perf_counter() - t0))
        row = row_from_info(job, info, time.perf_counter() - t0)
        row["inputs_sha"] = key
        files = {p.name: p.read_bytes() for p in sorted(folder.iterdir())} if scratch else {}
        return PairOutput(row, files)
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
