"""Pair registration (method §2): two photographs in, keypoints, matches and a homography out.

read → enhance → 768x768 pair batch → stream (SuperRetina) → NMS/borders → descriptor sampling
→ ratio matching → homography; then the matching trick: warp the enhanced query with H1, infer
the warped query alone (the reference's network outputs are reused; the whole model frame, or
with ``matching_trick_crop_margin`` >= 0 only the box of its field of view, docs/critical-path.md),
match again, H = H2 · H1.
Then ``transform.model`` (homography | quadratic | auto) chooses the transform returned beside
the homography (``transform.choose_transform``, fitted to the final matches); the network passes
above do not depend on it. The trick is skipped when the first pass is conclusive
(``matching_trick_skip_inliers``); where the last network pass has few inliers, guided passes
(``guided.guided_refinement``) add matches near where the transform predicts each keypoint and
refit the homography and the transform (issue 17). Keypoints outside each photograph's field of view (or
within ``keypoints.fov_margin`` of its rim, ``fov.py``) are dropped before matching; last, ``decide``
sets the status from the evidence and its confidence (``confidence.py``). All coordinates in the
result are original-image pixels.

Files (``register_files``): where the backend has a decode stream and ``input.stream_decode`` is
on, JPEG files go in as bytes and read → enhance → inference happen in the stream
(``stream_client.SuperRetinaStream.infer_encoded_async``), which hands back the same maps and
equalised images the driver would compute, and the field-of-view masks (the photographs only
where pictures are drawn); other files, or a file the stream cannot decode, take
the driver's path.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol

import cv2
import numpy as np

from .blas_threads import limit_blas_threads
from .confidence import Assessment, assess
from .descriptors import sample_descriptors
from .enhance import EnhanceSettings, equalise, gamma, model_input, to_model_input
from .fov import erode_fov, half_fov, inside
from .guided import guided_refinement
from .homography import (DEFAULT_THRESHOLDS, HomographyResult, degeneracy, estimate_homography, refine_homography,
                         transform_points)
from .image_io import ImageReadError, read_encoded, read_image_file
from .keypoints import detect, refine_subpixel, to_original
from .matching import ratio_match
from .parallel import pair_map
from .patch_refine import refine_points
from .transform import TransformChoice, choose_transform


class InferenceBackend(Protocol):
    """What the registrar runs the network on: the MindX stream (``stream_client.SuperRetinaStream``),
    PyTorch (``model.torch_stream.TorchStream``) or a test double."""

    def infer(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, 1, H, W) float32 in [0, 1] → detector (N, H, W), descriptor (N, 256, H/8−2, W/8−2)."""
        ...


@dataclass
class Features:
    """Keypoints of one image: model-frame (x, y), original-pixel (x, y), descriptors (K, 256)."""

    model_xy: np.ndarray
    xy: np.ndarray
    descriptors: np.ndarray
    pixel_scale: float = 1.0  # original pixels per model pixel (mean of x and y)


@dataclass
class Stage:
    """One matching pass: matches (M, 2) [query_idx, refer_idx] and its homography.

    ``query_xy`` (K, 2): the query points (original query pixels) that ``matches`` index, for
    passes that match other query points than the first pass's (guided passes; the patch-refined
    pass, whose query points the correlation placed)."""

    matches: np.ndarray
    homography: HomographyResult
    query_xy: np.ndarray | None = None


@dataclass
class RegistrationResult:
    status: str                                  # "registered" | "failed"
    reason: str | None
    H: np.ndarray | None                         # (3, 3) query → reference, original pixels
    query: Features
    refer: Features
    first: Stage
    second: Stage | None = None                  # matching-trick pass (query features of the warped query)
    warped_query: Features | None = None         # keypoints of the warped query (reference frame)
    seconds: dict = field(default_factory=dict)
    query_size: tuple = (0, 0)                   # (H, W)
    refer_size: tuple = (0, 0)
    query_equalised: np.ndarray | None = None    # uint8 CLAHE images (enhance.equalise), for the pictures
    refer_equalised: np.ndarray | None = None
    transform: TransformChoice | None = None     # returned transform (transform.model), None if failed
    decoded_in: str = "driver"                   # "stream" (decode stream) or "driver": who read and enhanced
    query_image: np.ndarray | None = None        # the photographs as decoded, when register_files was asked
    refer_image: np.ndarray | None = None        # for them (images=True): the pictures draw them
    input_stats: tuple | None = None             # register_files: fstat of the query's and reference's bytes read
    guided: list = field(default_factory=list)   # guided passes (Stage with query_xy), in order
    trick_skipped: str | None = None             # why the matching trick did not run (None: it ran or is off)
    trick_box: tuple | None = None               # (x, y, w, h) model pixels the matching trick inferred (ran only)
    assessment: Assessment | None = None         # evidence and confidence of the transform (confidence.py)
    rejected: tuple | None = None                # (H, transform) a failed assessment did not return
    refined: Stage | None = None                 # correspondences placed by patch correlation (patch_refine.py)

    @property
    def final(self) -> Stage:
        """The last pass: the patch-refined matches, else the last guided pass, else the last network pass."""
        if self.refined is not None:
            return self.refined
        return self.guided[-1] if self.guided else self.network_final

    @property
    def network_final(self) -> Stage:
        """The last pass whose matches the network's descriptors found without a transform's
        guidance: the matching trick's where it ran and found a homography, else the first.
        The confidence counts its support (guided matches back whatever transform guided them)."""
        return self.second if self.second is not None and self.second.homography.ok else self.first

    @property
    def final_query_xy(self) -> np.ndarray:
        """Query-side points of the final matches, in original query pixels."""
        return self.stage_query_xy(self.final)

    def stage_query_xy(self, stage: Stage) -> np.ndarray:
        """Query-side points (original query pixels) that ``stage``'s match indices refer to."""
        if stage.query_xy is not None:
            return stage.query_xy
        if stage is self.first:
            return self.query.xy
        # The second pass matched the warped query: bring its points back through H1⁻¹.
        return transform_points(np.linalg.inv(self.first.homography.H), self.warped_query.xy)


def refitted_stage(matches: np.ndarray, query_xy: np.ndarray, refer_xy: np.ndarray, H: np.ndarray,
                   method: str) -> Stage:
    """A pass whose homography ``H`` was refitted to its matches (guided passes, patch correlation),
    not estimated: its inliers are the matches within 3 px of H, as the first pass marks them.
    ``matches`` (M, 2) index ``query_xy`` (the stage's own query points) and ``refer_xy``."""
    q, r = query_xy[matches[:, 0]], refer_xy[matches[:, 1]]
    inl = np.linalg.norm(transform_points(H, q) - r, axis=1) <= DEFAULT_THRESHOLDS["LMEDS"]
    return Stage(matches, HomographyResult(H, inl, int(inl.sum()), float(inl.mean()), None, method), query_xy)


def frame_corners(M: np.ndarray, model_hw: tuple) -> np.ndarray | None:
    """(4, 2) corners of a (H_m, W_m) frame under the homography M, or None where one maps through
    the horizon (w <= 0: the warped frame is unbounded, its corners do not bound it)."""
    hm, wm = model_hw
    c = np.array([[0, 0, 1], [wm, 0, 1], [wm, hm, 1], [0, hm, 1]], np.float64) @ M.T
    if np.any(c[:, 2] <= 1e-9):
        return None
    return c[:, :2] / c[:, 2:]


CROP_ALIGN = 16   # the network's coarsest stride (descriptor head): crops start and end on it


def trick_crop(box: tuple, margin: int, model_hw: tuple) -> tuple | None:
    """(x, y, w, h) of the box (x0, y0, x1, y1) (model pixels, floats allowed) grown by ``margin``,
    out to multiples of ``CROP_ALIGN`` and cut to the (H_m, W_m) frame; None where that is the
    whole frame or nothing of it."""
    hm, wm = model_hw
    a = CROP_ALIGN
    x0 = max(0, int(np.floor((box[0] - margin) / a)) * a)
    y0 = max(0, int(np.floor((box[1] - margin) / a)) * a)
    x1 = min(wm, int(np.ceil((box[2] + margin) / a)) * a)
    y1 = min(hm, int(np.ceil((box[3] + margin) / a)) * a)
    # at least 2 x CROP_ALIGN a side: a descriptor map of one cell or none is not a map
    if x1 - x0 < 2 * a:
        x0, x1 = (max(0, x1 - 2 * a), max(0, x1 - 2 * a) + 2 * a) if x1 >= 2 * a else (0, 2 * a)
    if y1 - y0 < 2 * a:
        y0, y1 = (max(0, y1 - 2 * a), max(0, y1 - 2 * a) + 2 * a) if y1 >= 2 * a else (0, 2 * a)
    if x1 <= x0 or y1 <= y0 or (x0, y0, x1, y1) == (0, 0, wm, hm):
        return None
    return (x0, y0, x1 - x0, y1 - y0)


class Timer:
    def __init__(self):
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, stage: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - t0


class Registrar:
    """Registers pairs through an inference backend; thread-safe (several pairs may be in flight).

    ``estimator`` is the homography estimator (``homography.estimate_homography``'s signature);
    the benchmark passes one that accepts what OpenCV returns unchecked, as the reference does.
    """

    def __init__(self, backend: InferenceBackend, config: dict,
                 estimator: Callable[..., HomographyResult] = estimate_homography):
        limit_blas_threads()   # idle OpenBLAS workers spin beside the network's threads (blas_threads.py)
        self.backend = backend
        self.cfg = config
        self.estimator = estimator
        self.model_hw = (config["model"]["image_height"], config["model"]["image_width"])
        self.enhance = EnhanceSettings.from_config(config.get("enhance"))
        d = config.get("descriptors", {})
        self.descriptor_args = {"interpolation": d.get("interpolation", "bilinear"), "pool": d.get("pool", 0.0),
                                "normalise": d.get("normalise", "l2")}

    # -- steps ---------------------------------------------------------------------------
    def _features(self, det: np.ndarray, desc: np.ndarray, image_hw: tuple, t: Timer, prefix: str = "",
                  fov: np.ndarray | None = None) -> Features:
        k = self.cfg["keypoints"]
        with t(prefix + "keypoints"):
            xy_model, scores = detect(det, k["nms_size"], k["nms_thresh"], k["border"])
            if fov is not None:  # keypoints on or outside the field-of-view rim (fov.model_fov)
                keep = inside(fov, xy_model)
                xy_model, scores = xy_model[keep], scores[keep]
            if 0 < k["max_keypoints"] < len(scores):
                keep = np.sort(np.argsort(-scores, kind="stable")[: k["max_keypoints"]])
                xy_model = xy_model[keep]
            if k["subpixel"]:
                xy_model = refine_subpixel(det, xy_model)
        with t(prefix + "descriptors"):
            descriptors = sample_descriptors(xy_model, desc, **self.descriptor_args)
        scale = (image_hw[0] / self.model_hw[0] + image_hw[1] / self.model_hw[1]) / 2
        return Features(xy_model, to_original(xy_model, self.model_hw, image_hw), descriptors, scale)

    def _match(self, q: Features, r: Features, t: Timer, prefix: str = "") -> Stage:
        with t(prefix + "matching"):
            m = ratio_match(q.descriptors, r.descriptors, self.cfg["matching"]["knn_thresh"])
        pq, pr = q.xy[m[:, 0]], r.xy[m[:, 1]]
        h = self.cfg["homography"]
        with t(prefix + "homography"):
            hom = self._estimate(pq, pr, h["method"], r.pixel_scale)
            # LMEDS breaks down below half the matches right; a threshold-based estimator can still
            # find the consensus. Only a failed estimate is retried, so working pairs are unchanged.
            if not hom.ok and h["fallback"].upper() not in ("NONE", h["method"].upper()):
                retry = self._estimate(pq, pr, h["fallback"], r.pixel_scale)
                if retry.ok:
                    hom = retry
        return Stage(m, hom)

    def _estimate(self, pq: np.ndarray, pr: np.ndarray, method: str, refer_scale: float) -> HomographyResult:
        h = self.cfg["homography"]
        # reproj_threshold is for RANSAC/USAC only (configs/default.yaml): LMEDS keeps OpenCV's
        # default (3 px, as the reference), which sets its inlier mask and hence the inlier rate.
        thresh = None if method.upper() == "LMEDS" else h["reproj_threshold"]
        return self.estimator(pq, pr, method, thresh, h["min_matches"],
                              refine_scale=h["refine_scale"] * refer_scale)

    # -- pair ----------------------------------------------------------------------------
    def register_images(self, query: np.ndarray, refer: np.ndarray, timer: Timer | None = None) -> RegistrationResult:
        """Register (H, W[, 3]) BGR/gray uint8/uint16 photographs; sizes may differ."""
        t = timer or Timer()
        with t("enhance"):
            eq, er = pair_map(lambda im: equalise(im, self.enhance), query, refer)  # uint8 CLAHE outputs
            g = self.enhance.gamma
            batch = np.stack([model_input(eq, self.model_hw, g), model_input(er, self.model_hw, g)])[:, None]
        with t("inference"):
            det, desc = self.backend.infer(batch)
        return self._register_maps(eq, er, (batch[0, 0], batch[1, 0]), det, desc, t, (query, refer))

    def _register_maps(self, eq: np.ndarray, er: np.ndarray, inputs: tuple, det: np.ndarray,
                       desc: np.ndarray, t: Timer, photographs: tuple, half_fovs: tuple = (None, None)
                       ) -> RegistrationResult:
        """Everything after the first inference: eq/er (H, W) uint8 equalised images, inputs the
        query's and the reference's (h, w) float32 model inputs, det (2, h, w) and desc (2, 256, h/8-2, w/8-2)
        (or pairs of the query's and the reference's (h, w) and (256, h/8-2, w/8-2) maps),
        photographs the (query, reference) as decoded (their field of view is found on them,
        unless ``half_fovs`` has it already: ``fov.half_fov`` masks, e.g. from the decode stream)."""
        margin = self.cfg["keypoints"]["fov_margin"]
        fovs = (None, None)
        if margin >= 0:
            with t("fov"):
                if any(h is None for h in half_fovs):   # found on the photographs, both at once
                    half_fovs = pair_map(lambda im: half_fov(im, self.model_hw), *photographs)
                fovs = tuple(erode_fov(h, self.model_hw, margin) for h in half_fovs)
        fq = self._features(det[0], desc[0], eq.shape, t, fov=fovs[0])
        fr = self._features(det[1], desc[1], er.shape, t, fov=fovs[1])
        first = self._match(fq, fr, t)
        result = RegistrationResult("registered", None, first.homography.H, fq, fr, first,
                                    seconds=t.seconds, query_size=eq.shape, refer_size=er.shape,
                                    query_equalised=eq, refer_equalised=er)
        if not first.homography.ok:
            result.status, result.reason = "failed", first.homography.failure_reason
            return result
        if self.cfg["use_matching_trick"]:
            result.trick_skipped = self._trick_not_needed(first)
            if result.trick_skipped is None:
                self._matching_trick(result, eq, inputs[0], t, fovs[0])
        with t("transform"):
            result.transform = self.choose_transform(result)
        if self._guided_needed(result):
            with t("guided"):
                self._guided_passes(result)
        if self._patch_refine_needed(result):
            with t("patch_refine"):
                self._patch_refine(result, *inputs)
        with t("confidence"):
            self.decide(result)
        return result

    # -- guided matching and the second pass's skip (issue 17.1, 19.2) ----------------------
    def _trick_not_needed(self, first: Stage) -> str | None:
        """Why the matching trick can be skipped (the first pass is conclusive), or None.

        Conclusive: at least ``matching_trick_skip_inliers`` inliers within 3 px of the first
        homography (0 = never skip); benchmarks/guided_matching.py measures what the trick adds.
        """
        need = self.cfg["matching_trick_skip_inliers"]
        n = first.homography.num_inliers
        if need > 0 and n >= need:
            return f"first pass conclusive: {n} inliers (>= matching_trick_skip_inliers {need})"
        return None

    def _guided_needed(self, result: RegistrationResult) -> bool:
        """Guided passes run where the last network pass has few matches on the homography:
        fewer than ``guided.max_inliers`` within 3 px (0 = always); on pairs with many, they
        added loose matches and cost accuracy on the eye-model sets (docs/registration-models.md §7)."""
        g = self.cfg["guided"]
        if g["iterations"] == 0:
            return False
        return g["max_inliers"] == 0 or result.final.homography.num_inliers < g["max_inliers"]

    def _guided_passes(self, result: RegistrationResult) -> None:
        """Match again where the transform predicts each query keypoint (``guided.guided_refinement``),
        starting from the registration's homography and transform, keeping the last network
        pass's matches and adding the guided ones; the last pass becomes the final one (its
        homography ``result.H``, its transform ``result.transform``).

        The query keypoints are those of the last network pass: the warped query's (brought
        back to query pixels through H1) after the matching trick, else the query's."""
        st = result.final
        qxy = result.final_query_xy
        qdesc = result.warped_query.descriptors if st is result.second else result.query.descriptors
        g = self.cfg["guided"]
        scale = (self.cfg["homography"]["refine_scale"] or 3.0) * result.refer.pixel_scale
        passes = guided_refinement(qxy, qdesc, result.refer.xy, result.refer.descriptors, result.H,
                                   self._transform_chooser(result),
                                   scale, result.refer.pixel_scale, g["radius"], g["ratio"], g["iterations"],
                                   g["min_gain"], start=result.transform, start_count=len(st.matches),
                                   keep=st.matches)
        for p in passes:
            result.guided.append(refitted_stage(p.matches, qxy, result.refer.xy, p.H, "GUIDED_CAUCHY"))
        if passes:
            result.H = passes[-1].H
            result.transform = passes[-1].transform

    def _patch_refine_needed(self, result: RegistrationResult) -> bool:
        """Patch correlation runs (``patch_refine.half`` > 0) on registered pairs whose last network
        pass has fewer than ``patch_refine.max_inliers`` 3-px inliers (0 = always): with more, the
        fit averages the keypoints' noise away already and the correlation only costs time."""
        p = self.cfg["patch_refine"]
        if p["half"] == 0 or result.transform is None:
            return False
        return p["max_inliers"] == 0 or result.network_final.homography.num_inliers < p["max_inliers"]

    def _patch_refine(self, result: RegistrationResult, query_input: np.ndarray, refer_input: np.ndarray) -> None:
        """Correspondences placed by patch correlation on the model inputs (``patch_refine``),
        then the homography refitted to them (Cauchy refinement from the current one) and the
        transform chosen again; they become the final pass (``result.refined``).

        Each final match's query point moves to where its reference keypoint's patch correlates
        best (or stays, where the correlation is not conclusive); every other reference keypoint
        whose counterpart the transform puts inside the query gets one where the correlation is
        conclusive. The network passes stay as they were (the confidence counts their support)."""
        st = result.final
        if len(st.matches) < 8:
            return
        p = self.cfg["patch_refine"]
        (hm, wm), (h_q, w_q) = self.model_hw, result.query_size
        to_model = np.array([wm / w_q, hm / h_q])
        others = np.setdiff1d(np.arange(len(result.refer.xy)), st.matches[:, 1])
        predicted = result.transform.transform.inverse(result.refer.xy[others])   # NaN where it has none
        inside_q = np.isfinite(predicted).all(axis=1) & (predicted >= 0).all(axis=1) & (predicted < [w_q, h_q]).all(1)
        ridx = np.concatenate([st.matches[:, 1], others[inside_q]])
        start = np.concatenate([result.final_query_xy[st.matches[:, 0]], predicted[inside_q]])
        M = self._model_matrix(result.H, result.query_size, result.refer_size)
        placed = refine_points(query_input, refer_input, M, start * to_model, result.refer.model_xy[ridx],
                               p["half"], p["search"], p["min_ncc"], p["min_curvature"])
        keep = placed.moved.copy()
        keep[:len(st.matches)] = True
        q, r, ridx = placed.query_xy[keep] / to_model, result.refer.xy[ridx[keep]], ridx[keep]
        scale = (self.cfg["homography"]["refine_scale"] or 3.0) * result.refer.pixel_scale
        H = refine_homography(q, r, result.H, scale)
        if not np.isfinite(H).all() or degeneracy(H, q) is not None:
            return
        result.refined = refitted_stage(np.stack([np.arange(len(q)), ridx], axis=1), q, result.refer.xy, H,
                                        "PATCH_CAUCHY")
        result.H = H
        result.transform = self._transform_chooser(result)(q, r, H)

    def decide(self, result: RegistrationResult) -> None:
        """The status of a transformed result from its evidence (``confidence.assess``): failed, with
        the reason, below ``confidence.min_confidence`` or when the transform is implausible."""
        result.assessment = assess(result, self.model_hw)
        reason = result.assessment.failure(self.cfg["confidence"]["min_confidence"])
        if reason is not None:  # the transform is kept aside (for the calibration), not returned
            result.rejected = (result.H, result.transform)
            result.status, result.reason, result.H, result.transform = "failed", reason, None, None

    def choose_transform(self, result: RegistrationResult, model: str | None = None) -> TransformChoice:
        """The transform of ``transform.model`` (or ``model``) for a registered result, fitted to
        its final matches with the homography refinement's Cauchy scale."""
        st = result.final
        return self._transform_chooser(result, model)(result.final_query_xy[st.matches[:, 0]],
                                                      result.refer.xy[st.matches[:, 1]], result.H)

    def _transform_chooser(self, result: RegistrationResult, model: str | None = None):
        """``choose(q, r, H) -> TransformChoice`` for this pair: ``transform.model`` (or ``model``)
        fitted to matched points q, r (M, 2), original pixels) from homography H, with the
        homography refinement's Cauchy scale and the pair's image sizes."""
        c = self.cfg["transform"]
        scale = (self.cfg["homography"]["refine_scale"] or 3.0) * result.refer.pixel_scale
        qwh, rwh = (result.query_size[1], result.query_size[0]), (result.refer_size[1], result.refer_size[0])

        def choose(q: np.ndarray, r: np.ndarray, H: np.ndarray) -> TransformChoice:
            return choose_transform(model or c["model"], q, r, H, scale, qwh, rwh, c["min_matches"], c["auto_gain"],
                                    extrapolation=c["extrapolation"])
        return choose

    def _warped_query_input(self, H1: np.ndarray, equalised_query: np.ndarray, query_input: np.ndarray,
                            refer_size: tuple) -> np.ndarray:
        """The query warped by H1 into the reference frame, as a model input (H_m, W_m)."""
        (hm, wm), (h_r, w_r) = self.model_hw, refer_size
        if self.cfg["matching_trick_warp"] == "full":  # the reference: warp the float image at full size, resize
            warped = cv2.warpPerspective(gamma(equalised_query, self.enhance.gamma), H1, (w_r, h_r),
                                         flags=cv2.INTER_LINEAR)
            return to_model_input(warped, self.model_hw)
        # Same warp expressed between the two model frames: ~15x cheaper on FIRE-size images.
        return self._model_warp(H1, equalised_query.shape, refer_size, query_input)

    def _model_warp(self, H1: np.ndarray, query_hw: tuple, refer_hw: tuple, image: np.ndarray) -> np.ndarray:
        """A query model-frame (H_m, W_m) image (float32 input, or a bool mask: nearest, outside
        False) warped by H1 into the reference's model frame."""
        hm, wm = self.model_hw
        M = self._model_matrix(H1, query_hw, refer_hw)
        if image.dtype == bool:
            return cv2.warpPerspective(image.astype(np.uint8), M, (wm, hm), flags=cv2.INTER_NEAREST).astype(bool)
        return cv2.warpPerspective(image, M, (wm, hm), flags=cv2.INTER_LINEAR)

    def _model_matrix(self, H1: np.ndarray, query_hw: tuple, refer_hw: tuple) -> np.ndarray:
        """(3, 3) H1 between the model frames: query model pixels → reference model pixels."""
        (hm, wm), (h_r, w_r), (h_q, w_q) = self.model_hw, refer_hw[:2], query_hw[:2]
        return np.diag([wm / w_r, hm / h_r, 1.0]) @ H1 @ np.diag([w_q / wm, h_q / hm, 1.0])

    def _trick_box(self, corners: np.ndarray | None, warped_fov: np.ndarray | None) -> tuple | None:
        """The part of the reference's model frame the matching trick infers, (x, y, w, h), or None
        for the whole frame (``matching_trick_crop_margin`` -1, or a box that is the frame).

        The warped query's valid region — its field of view where the mask is on, else its warped
        frame (``corners`` (4, 2), None where the warp folds the frame over the horizon) — within
        the frame, grown by the margin (context for the network, whose outputs near a cut differ
        from the whole frame's) and out to multiples of 16 (``trick_crop``), so that the crop's
        maps line up with the frame's cells.
        """
        margin = self.cfg["matching_trick_crop_margin"]
        hm, wm = self.model_hw
        if margin < 0 or hm % 16 or wm % 16 or not getattr(self.backend, "any_input_size", True):
            return None
        if warped_fov is not None:
            x, y, w, h = cv2.boundingRect(warped_fov.astype(np.uint8))
            if w == 0:      # nothing of the query's field of view lands in the frame
                return None
            box = (x, y, x + w, y + h)
        elif corners is not None:
            lo, hi = corners.min(axis=0), corners.max(axis=0)
            box = (lo[0], lo[1], hi[0], hi[1])
        else:
            return None
        return trick_crop(box, margin, self.model_hw)

    def _infer_box(self, warped: np.ndarray, box: tuple | None) -> tuple[np.ndarray, np.ndarray, tuple]:
        """Infer the (H_m, W_m) warped query input within ``box`` (None: all of it); the maps come
        back in the whole frame's shape, zero outside the box, with the box (x, y, w, h) inferred."""
        hm, wm = self.model_hw
        if box is None:
            det, desc = self.backend.infer(warped[None, None])
            return det, desc, (0, 0, wm, hm)
        x, y, w, h = box
        det_c, desc_c = self.backend.infer(np.ascontiguousarray(warped[y:y + h, x:x + w])[None, None])
        det = np.zeros((1, hm, wm), np.float32)
        det[0, y:y + h, x:x + w] = det_c[0]
        # Descriptor cell j of the crop is cell j + offset/8 of the frame (both maps drop one cell per side).
        desc = np.zeros((1, desc_c.shape[1], hm // 8 - 2, wm // 8 - 2), np.float32)
        desc[0, :, y // 8:y // 8 + h // 8 - 2, x // 8:x // 8 + w // 8 - 2] = desc_c[0]
        return det, desc, box

    def _matching_trick(self, result: RegistrationResult, equalised_query: np.ndarray, query_input: np.ndarray,
                        t: Timer, query_fov: np.ndarray | None = None) -> None:
        h_r, w_r = result.refer_size
        H1 = result.first.homography.H
        with t("trick_warp"):
            warped = self._warped_query_input(H1, equalised_query, query_input, result.refer_size)
            if query_fov is not None:  # the query's field of view, warped the same way (nearest)
                query_fov = self._model_warp(H1, equalised_query.shape, result.refer_size, query_fov)
            box = self._trick_box(frame_corners(self._model_matrix(H1, equalised_query.shape, result.refer_size),
                                                   self.model_hw), query_fov)
        with t("trick_inference"):
            det, desc, result.trick_box = self._infer_box(warped, box)
        fw = self._features(det[0], desc[0], (h_r, w_r), t, "trick_", fov=query_fov)
        second = self._match(fw, result.refer, t, "trick_")
        result.second, result.warped_query = second, fw
        if second.homography.ok:
            result.H = second.homography.H @ H1
            result.H /= result.H[2, 2]

    def register_files(self, query_path: Path, refer_path: Path, timer: Timer | None = None,
                       images: bool = False) -> RegistrationResult:
        """Register two image files; ``images``: keep the decoded photographs on the result
        (``query_image``/``refer_image``, for the pictures)."""
        t = timer or Timer()
        limit = self.cfg["input"]["max_pixels"]
        if self._streams_files():
            try:
                with t("read"):
                    (dq, fmt_q, *_, sq), (dr, fmt_r, *_, sr) = pair_map(lambda p: read_encoded(p, limit),
                                                                        query_path, refer_path)
            except ImageReadError:  # the driver's read below gives the reason
                fmt_q = fmt_r = None
            if fmt_q == fmt_r == "jpeg":
                result = self._register_encoded(dq, dr, t, images)
                if result is not None:
                    result.input_stats = (sq, sr)
                    return result
        with t("read"):
            (q, sq), (r, sr) = pair_map(lambda p: read_image_file(p, limit), query_path, refer_path)
        result = self.register_images(q, r, t)
        result.input_stats = (sq, sr)
        if images:
            result.query_image, result.refer_image = q, r
        return result

    def _streams_files(self) -> bool:
        """True where JPEG files go through the backend's decode stream (``input.stream_decode``)."""
        decode = getattr(self.backend, "can_decode", None)
        layout = getattr(getattr(self.backend, "layout", None), "decode", None)
        # a stream that enhances otherwise than the config says is not used (the driver enhances as configured)
        return (bool(self.cfg["input"].get("stream_decode", False)) and decode == "jpg"
                and layout is not None and tuple(layout.model_hw) == tuple(self.model_hw)
                and getattr(layout, "enhance", self.enhance) == self.enhance)

    def _register_encoded(self, query: bytes, refer: bytes, t: Timer, images: bool) -> RegistrationResult | None:
        """Both JPEGs through the decode stream (several in flight: the stream's elements overlap
        them); None when the stream could not take one, so the driver reads them instead."""
        from .stream_client import PipelineError

        with t("stream"):  # decode + enhance + inference of both photographs, in the stream
            # the photographs come back where the pictures need them, or the field-of-view mask and
            # the stream does not send that (superretina_enhance outputFov 0)
            want = images or (self.cfg["keypoints"]["fov_margin"] >= 0 and self.backend.layout.decode.fov_key is None)
            futures = [self.backend.infer_encoded_async(data, want) for data in (query, refer)]
            try:
                dq, dr = (f.result() for f in futures)
            except PipelineError:
                for f in futures:
                    f.exception()  # both finished: nothing of this pair is left in the stream
                return None
        # the query's and the reference's maps as they came (views of the stream's messages, not copied)
        det, desc = (dq.detector[0], dr.detector[0]), (dq.descriptor[0], dr.descriptor[0])
        result = self._register_maps(dq.equalised, dr.equalised, (dq.model_input, dr.model_input), det, desc, t,
                                     (dq.image, dr.image), (dq.fov, dr.fov))
        result.decoded_in = "stream"
        if images:
            result.query_image, result.refer_image = dq.image, dr.image
        return result
