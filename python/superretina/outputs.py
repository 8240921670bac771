"""Files a registration leaves behind: result.json and the three pictures.

The files of one run all belong to that run: the outputs an earlier run left in the folder
(result.json first) are removed before the new ones are written, and result.json, the record
of what was computed, is written last, so a folder holding a result.json holds that run's
pictures and no others. ``--out`` is checked (created, written to) before any work, and
nothing in it is written through a symbolic link: each file is written to a new temporary
name and renamed over the old name, which replaces a link instead of following it.
"""
from __future__ import annotations

import json
import os
import threading
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np

from . import viz
from .parallel import run_all
from .registrar import RegistrationResult
from .transform import HomographyTransform, inverse_maps, residual_stats

PARALLEL_MAX_PIXELS = 12_000_000
# What a registration writes into --out; all of them are this run's or absent afterwards.
OUTPUT_NAMES = ("result.json", "match_result.jpg", "result.jpg", "checkerboard.jpg")
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


class OutputError(RuntimeError):
    """``--out`` cannot take the outputs (a file in the way, not writable): one line for the user."""


def prepare_out(out: Path) -> Path:
    """Create ``out`` and prove it writable before any work; :class:`OutputError` if it is not.

    A file where the folder should be, a folder that cannot be created or written (read-only,
    no permission), or a folder in the place of one of the outputs is found here, not after
    minutes of work.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out}: --out must be a folder, and this is a file")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{out}: cannot create the --out folder ({exc.strerror or exc})") from None
    try:
        probe = _open_new(out / f".write-test-{os.getpid()}-{threading.get_ident()}")
        os.close(probe[0])
        os.unlink(probe[1])
    except OSError as exc:
        raise OutputError(f"{out}: cannot write into the --out folder ({exc.strerror or exc})") from None
    for name in OUTPUT_NAMES:
        path = out / name
        if path.is_dir() and not path.is_symlink():
            raise OutputError(f"{path}: is a folder; remove it or choose another --out")
    return out


@contextmanager
def out_folder(out: Path):
    """:func:`prepare_out` for the block's work: the folders this call created are removed again
    when the block raises before anything was written into them (a refused run, e.g. a bad
    pipeline or an unreadable image, leaves no empty --out behind)."""
    out = Path(out)
    created = missing_folders(out)
    prepare_out(out)
    try:
        yield out
    except BaseException:
        remove_empty(created)
        raise


def missing_folders(folder: Path) -> list[Path]:
    """The folders ``folder.mkdir(parents=True)`` would create, deepest first."""
    missing, p = [], Path(folder).absolute()
    while not os.path.lexists(p) and p != p.parent:
        missing.append(p)
        p = p.parent
    return missing


def remove_empty(folders: list[Path]) -> None:
    """Remove ``folders`` (deepest first) while they are empty; stop at the first that is not."""
    for folder in folders:
        try:
            os.rmdir(folder)
        except OSError:
            break


def _open_new(path: Path) -> tuple[int, Path]:
    # O_EXCL | O_NOFOLLOW: a new file of ours, never an existing file or the target of a link.
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o644), path


def write_file(path: Path, data: bytes, fsync: bool = False) -> Path:
    """Write ``data`` to ``path`` through a new temporary file renamed over it (links are replaced, not followed).

    ``fsync``: flush the bytes to the disk before the rename (a record that must survive a power
    cut). A failure (disk full, ...) is an OSError naming ``path``.
    """
    path = Path(path)
    try:
        fd, tmp = _open_new(path.with_name(f".{path.name}.{os.getpid()}-{threading.get_ident()}.tmp"))
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, str(path)) from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:  # e.g. ENOSPC: name the file the user will look for, not the temporary one
        tmp.unlink(missing_ok=True)
        raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def remove_outputs(out: Path) -> None:
    """Remove the outputs an earlier run left in ``out`` (result.json first; links themselves, not targets)."""
    for name in OUTPUT_NAMES:
        path = Path(out) / name
        if path.is_symlink() or path.is_file():
            path.unlink()


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


SCHEMA_VERSION = 3   # of result.json; 2: snake_case names, provenance (package version, model sha256, config);
                     # 3: confidence and assessment, match_counts and matching_trick, decoded_in, dicom, device, engine


def result_json(res: RegistrationResult, query_path, refer_path, provenance: dict) -> dict:
    """result.json of a registration. ``query_path``/``refer_path``: the files, or None for arrays;
    ``provenance``: what produced it (``provenance.describe``: package version, model and its
    sha256, pipeline, runtime, effective config)."""
    q, r, inl = final_matches(res)
    passes = [{"name": "first", **_stage_json(res.first)}]
    if res.second is not None:
        passes.append({"name": "matching_trick", **_stage_json(res.second)})
    passes += [{"name": f"guided_{i + 1}", **_stage_json(g)} for i, g in enumerate(res.guided)]
    if res.refined is not None:
        passes.append({"name": "patch_refined", **_stage_json(res.refined)})
    n = len(inl)
    return {
        "schema_version": SCHEMA_VERSION,
        "status": res.status,
        "reason": res.reason,
        **assessment_json(res),
        "query": None if query_path is None else str(query_path),
        "refer": None if refer_path is None else str(refer_path),
        "query_size": {"height": res.query_size[0], "width": res.query_size[1]},
        "refer_size": {"height": res.refer_size[0], "width": res.refer_size[1]},
        "dicom": dicom_json(query_path, refer_path),
        "homography": None if res.H is None else res.H.tolist(),
        "homography_direction": "query -> reference, original pixels",
        **transform_json(res, q, r),
        "keypoints": {"query": res.query.xy.round(2).tolist(), "refer": res.refer.xy.round(2).tolist()},
        "num_keypoints": {"query": len(res.query.xy), "refer": len(res.refer.xy)},
        "matches": {"query_xy": q.round(2).tolist(), "refer_xy": r.round(2).tolist(), "inlier": inl.tolist()},
        "num_matches": n, "num_inliers": int(inl.sum()),
        "inlier_rate": round(float(inl.sum() / n), 6) if n else 0.0,
        "passes": passes,
        **pass_counts(res),
        "seconds": {k: round(v, 4) for k, v in res.seconds.items()},
        "decoded_in": res.decoded_in,   # "stream": the decode stream read and enhanced; "driver": the driver did
        **provenance,
    }


def dicom_json(query_path, refer_path) -> dict | None:
    """``dicom`` of result.json: each DICOM photograph's SOP Instance UID, study date and
    laterality where its header has them (``dicom.dicom_fields``); None when neither file is DICOM."""
    from .dicom import dicom_fields

    q, r = (None if p is None else dicom_fields(p) for p in (query_path, refer_path))
    return None if q is None and r is None else {"query": q, "refer": r}


def pass_counts(res: RegistrationResult) -> dict:
    """``match_counts`` (matches of each pass, in order: first, matching trick, guided passes,
    the patch-refined matches)
    and ``matching_trick`` (ran, or skipped and why) of a registration."""
    counts = {"first": int(len(res.first.matches)),
              "matching_trick": None if res.second is None else int(len(res.second.matches)),
              "guided": [int(len(g.matches)) for g in res.guided],
              "patch_refined": None if res.refined is None else int(len(res.refined.matches))}
    return {"match_counts": counts,
            "matching_trick": {"ran": res.second is not None, "skipped_reason": res.trick_skipped,
                               # the part of the reference's model frame its inference took (model pixels)
                               "inferred_box": None if res.trick_box is None else dict(
                                   zip(("x", "y", "width", "height"), map(int, res.trick_box)))}}


def assessment_json(res: RegistrationResult) -> dict:
    """``confidence`` (calibrated probability that the result is right, docs/confidence.md; 0 when
    no transform was found) and ``assessment`` (the evidence it was computed from, None then)."""
    a = res.assessment
    return {"confidence": 0.0 if a is None else round(a.confidence, 4),
            "assessment": None if a is None else {"evidence": a.evidence.to_json(), "implausible": a.implausible}}


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
    prepare_out(out)
    remove_outputs(out)
    q, r, inl = final_matches(res)
    o = cfg["outputs"]
    jobs = []
    if o["match_result"]:
        status = "registered" if res.status == "registered" else f"FAILED: {res.reason}"
        lines = [f"{status}", f"keypoints {len(res.query.xy)} / {len(res.refer.xy)}   "
                 f"matches {len(inl)}   inliers {int(inl.sum())} ({100 * inl.mean() if len(inl) else 0:.0f}%)"]
        dots, quality = inl, quality_line(info)
        if quality:
            lines.append(quality)
            if res.transform.model != "homography" and len(q):
                # green = within 3 px of the returned transform, so that a well-registered
                # small-overlap pair does not look failed by the homography's 3-px inliers
                dots = np.linalg.norm(res.transform.transform.apply(q) - r, axis=1) <= 3.0
                lines.append(f"green: within 3 px of the {res.transform.model} transform")
        jobs.append(lambda: save_jpeg(out / "match_result.jpg", viz.draw_matches(query_img, refer_img, q, r, dots, lines)))
    # The pictures warp with the returned transform (a homography exactly as before; another
    # transform through its inverse maps), each at the reference's size halved to its
    # ``*_max_side``; the warp of each size is made once for both pictures.
    warps = PictureWarps(res)
    s_merged = picture_scale(res.refer_size, o.get("merged_max_side", 0))
    s_board = picture_scale(res.refer_size, o.get("checkerboard_max_side", 0))
    if res.H is not None and o["merged"]:
        jobs.append(lambda: save_jpeg(out / "result.jpg", merged_picture(res, warps.at(s_merged), 0, s_merged)))
    if res.H is not None and o["checkerboard"]:
        jobs.append(lambda: save_jpeg(out / "checkerboard.jpg", checkerboard_picture(
            res, query_img, refer_img, warps.at(s_board), s_board, o["checkerboard_tiles"])))
    # Side by side up to ~12 MP (FIRE's 2912x2912 is 8.5 MP); larger references draw one picture
    # at a time, since each holds several full-size copies (an 8000x8000 reference: ~200 MB each).
    # result.json's text is made beside the pictures (pure Python, ~10 ms at FIRE size); the file
    # is written last: the run's record
    jobs.append(lambda: json.dumps(info, indent=1).encode())
    if len(jobs) == 1:   # result.json only: the photographs are not needed (may be None)
        written = [jobs[0]()]
    elif refer_img.shape[0] * refer_img.shape[1] <= PARALLEL_MAX_PIXELS:
        written = run_all(*jobs)
    else:
        written = [job() for job in jobs]
    written.append(write_file(out / "result.json", written.pop()))
    return written


def picture_scale(refer_size: tuple[int, int], max_side: int) -> float:
    """1, 1/2, 1/4 ...: the reference's (h, w) size halved until its longer side is at most
    ``max_side`` (0: full size; never below 64 px a side). Exact halvings keep OpenCV's
    integer-factor area path and make a picture's pixels the full-size picture's, averaged."""
    s = 1.0
    while max_side > 0 and max(refer_size) * s > max_side and min(refer_size) * s >= 64:
        s /= 2
    return s


class PictureWarps:
    """The warp ``viz.merged``/``viz.checkerboard`` take between the frames scaled by ``s``: a
    3x3 homography, or remap maps for another transform, made once per scale. Smaller maps are
    taken every 1/s-th pixel of full-size maps already made (cheaper than solving again), else
    solved at their own size (``thumbnails.thumbnail_warp``: a quarter of the work per halving)."""

    def __init__(self, res: RegistrationResult, full=None):
        """``full``: the full-size warp when the caller has it already (smaller maps come from it)."""
        self.res, self.made = res, ({} if full is None else {1.0: full})
        self.lock = threading.Lock()   # the pictures are drawn side by side

    def at(self, s: float):
        with self.lock:
            if s not in self.made:
                self.made[s] = self._make(s)
            return self.made[s]

    def _make(self, s: float):
        from .thumbnails import thumbnail_warp  # thumbnails imports this module

        res = self.res
        homography = res.transform is None or res.transform.model == "homography"
        if s == 1.0:
            return res.H if homography else inverse_maps(
                res.transform.transform, (res.refer_size[1], res.refer_size[0]), (res.query_size[1], res.query_size[0]))
        h, w = round(res.refer_size[0] * s), round(res.refer_size[1] * s)
        full = self.made.get(1.0)
        if isinstance(full, tuple):   # small pixel (x, y) is full pixel (x/s, y/s), as in thumbnails.py
            k = round(1 / s)
            return tuple(np.ascontiguousarray(m[::k, ::k][:h, :w] * np.float32(s)) for m in full)
        return thumbnail_warp(res, s, s, (w, h))


def merged_picture(res: RegistrationResult, warp, max_side: int, scale: float | None = None) -> np.ndarray:
    """The overlay (``viz.merged``) of a registered result, drawn at the reference's size halved
    until its longer side is at most ``max_side`` (:func:`picture_scale`), or at ``scale`` when
    given, in which case ``warp`` is the one at that scale (:class:`PictureWarps`); otherwise
    ``warp`` is the full-size one.

    The equalised images are halved first (OpenCV's exact 2x area path) and the transform is
    expressed between the halved frames: each halving quarters the warp and the JPEG encoding,
    the costliest steps of the pictures.
    """
    from .thumbnails import shrunk  # thumbnails imports this module

    s = picture_scale(res.refer_size, max_side) if scale is None else scale
    if s == 1.0:
        return viz.merged(res.query_equalised, warp, res.refer_equalised)
    if scale is None:
        warp = PictureWarps(res, full=warp).at(s)
    return viz.merged(shrunk(res.query_equalised, s), warp, shrunk(res.refer_equalised, s))


def checkerboard_picture(res: RegistrationResult, query_img, refer_img, warp, scale: float, tiles: int) -> np.ndarray:
    """``viz.checkerboard`` of the photographs at ``scale`` (1: full size), ``warp`` the one at that scale."""
    from .thumbnails import shrunk  # thumbnails imports this module

    if scale == 1.0:
        return viz.checkerboard(query_img, warp, refer_img, tiles)
    return viz.checkerboard(shrunk(query_img, scale), warp, shrunk(refer_img, scale), tiles)


def save_jpeg(path: Path, image: np.ndarray, quality: int = 90) -> Path:
    """Encode ``image`` as JPEG (scaled down to JPEG's 65535-pixel side limit when wider) and write it."""
    ok, data = cv2.imencode(".jpg", viz.fit_jpeg(image), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise OSError(f"{path}: could not encode the picture")
    return write_file(path, data.tobytes())

