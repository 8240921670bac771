"""The public Python API: register a pair, many pairs in one session, read a saved result.

    import superretina

    result = superretina.register("visit2.jpg", "visit1.jpg")      # query, reference: paths or arrays
    print(result.status, result.reason)                             # "registered" / "failed"
    H = result.homography                                           # (3, 3) query → reference pixels
    ref_xy = result.transform.apply([[100.0, 200.0]])               # query pixels → reference pixels
    overlay = result.transform.warp(query_image)                    # query in the reference frame
    result.save("out/pair1")                                        # result.json and the pictures

    with superretina.Session() as session:                          # the runtime and model open once
        for q, r in pairs:
            session.register(q, r).save(f"out/{q.stem}")

    again = superretina.load_result("out/pair1/result.json")

Images are file paths (JPEG, PNG 8/16 bit, TIFF, BMP) or numpy arrays: (H, W) gray or (H, W, 3)
BGR, uint8 or uint16 (OpenCV's layout: ``cv2.imread`` output goes in as it is). Every coordinate
is in original pixels, x to the right, y down, pixel centres at integers (OpenCV's convention).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Union

import numpy as np

from .app import open_app
from .image_io import check_image_array, read_image
from .outputs import SCHEMA_VERSION, prepare_out, remove_outputs, result_json, write_file, write_outputs
from .registrar import RegistrationResult

ImageLike = Union[str, Path, np.ndarray]


class ResultFileError(ValueError):
    """A result.json that cannot be read back (missing, not JSON, another schema)."""


@dataclass(frozen=True)
class Matches:
    """The final pass's matches, original pixels: ``query_xy`` (M, 2), ``refer_xy`` (M, 2), ``inlier`` (M,) bool."""

    query_xy: np.ndarray
    refer_xy: np.ndarray
    inlier: np.ndarray

    def __len__(self) -> int:
        return len(self.inlier)


class PairTransform:
    """The registration's transform bound to the reference frame.

    ``apply(points)``: query pixels (N, 2) → reference pixels (N, 2) float64;
    ``inverse(points)``: reference → query; ``warp(image)``: a query-sized image resampled into the
    reference frame (the reference's width × height); ``model``: "homography" or "quadratic".
    """

    def __init__(self, transform, refer_size: tuple[int, int]):
        self._t = transform
        self.refer_size = refer_size            # (height, width) of the reference

    @property
    def model(self) -> str:
        return self._t.model

    def apply(self, points) -> np.ndarray:
        return self._t.apply(np.asarray(points, np.float64).reshape(-1, 2))

    def inverse(self, points) -> np.ndarray:
        return self._t.inverse(np.asarray(points, np.float64).reshape(-1, 2))

    def warp(self, image: np.ndarray) -> np.ndarray:
        from .transform import warp_image

        h, w = self.refer_size
        return warp_image(np.asarray(image), self._t, (w, h))

    def to_json(self) -> dict:
        return self._t.to_json()

    def __repr__(self) -> str:
        return f"PairTransform({self.model}, reference {self.refer_size[1]}x{self.refer_size[0]})"


class Registration:
    """One registered (or failed) pair: what result.json holds, as numpy arrays and attributes.

    Attributes
    ----------
    status : str
        "registered" or "failed".
    reason : str or None
        Why it failed (None when registered).
    confidence : float
        Calibrated probability, in [0, 1], that the returned transform maps points within 6.5
        model pixels (25 px at FIRE's 2912 px) of the truth (``superretina.confidence``,
        docs/confidence.md); below ``confidence.min_confidence`` the pair is failed. 0 when no
        transform was found.
    homography : ndarray (3, 3) or None
        Query → reference, original pixels, ``H[2, 2] == 1`` (the reference's model).
    transform : PairTransform or None
        The returned transform (homography, or a model that fits the curved retina better).
    matches : Matches
        Final matches in original pixels (to 0.01 px, as result.json holds them), with the inlier
        flag of the final estimate.
    quality : dict
        Counts and rates (``num_matches``, ``num_inliers``, ``inlier_rate``, keypoint counts, and
        residuals under the returned transform where recorded).
    seconds : dict
        Time per stage, seconds.
    query_size, refer_size : (int, int)
        (height, width) of the photographs.
    """

    def __init__(self, info: dict, raw: RegistrationResult | None = None, images: tuple | None = None,
                 config: dict | None = None):
        self._info = info
        self._raw, self._images, self._config = raw, images, config
        self.status: str = info["status"]
        self.reason: str | None = info.get("reason")
        self.confidence: float = float(info.get("confidence") or 0.0)
        self.homography = None if info.get("homography") is None else np.asarray(info["homography"], np.float64)
        self.query_size = (info["query_size"]["height"], info["query_size"]["width"])
        self.refer_size = (info["refer_size"]["height"], info["refer_size"]["width"])
        m = info["matches"]
        self.matches = Matches(np.asarray(m["query_xy"], np.float64).reshape(-1, 2),
                               np.asarray(m["refer_xy"], np.float64).reshape(-1, 2),
                               np.asarray(m["inlier"], bool))
        self.keypoints = {k: np.asarray(v, np.float64).reshape(-1, 2) for k, v in info["keypoints"].items()}
        self.seconds: dict = dict(info.get("seconds", {}))
        self.quality: dict = {"num_keypoints_query": info["num_keypoints"]["query"],
                              "num_keypoints_refer": info["num_keypoints"]["refer"],
                              "num_matches": info["num_matches"], "num_inliers": info["num_inliers"],
                              "inlier_rate": info["inlier_rate"], **_residuals(info)}
        self.transform = self._transform(info)

    def _transform(self, info: dict) -> PairTransform | None:
        from .transform import HomographyTransform, transform_from_json

        if info.get("transform"):
            return PairTransform(transform_from_json(info["transform"]), self.refer_size)
        if self.homography is not None:
            return PairTransform(HomographyTransform(self.homography), self.refer_size)
        return None

    @property
    def registered(self) -> bool:
        return self.status == "registered"

    def annotate(self, key: str, value) -> None:
        """Add an entry to result.json (e.g. a known ground truth); the registration's own keys stay."""
        if key in self._info:
            raise KeyError(f"{key!r} is a result.json entry of the registration itself")
        self._info[key] = json.loads(json.dumps(value))

    def to_json(self) -> dict:
        """The result.json content (a copy): plain JSON types only."""
        return json.loads(json.dumps(self._info))

    def save(self, folder: str | Path) -> list[Path]:
        """Write result.json and, for a registration made in this process, the pictures into ``folder``.

        Returns the written paths (result.json last). A result read back with :func:`load_result`
        has no images, so only its result.json is written.
        """
        folder = Path(folder)
        if self._raw is not None and self._images is not None:
            return write_outputs(self._raw, *self._images, folder, self._info, self._config)
        remove_outputs(prepare_out(folder))   # no pictures of another run beside this result
        return [write_file(folder / "result.json", json.dumps(self._info, indent=1).encode())]

    def __repr__(self) -> str:
        return (f"Registration({self.status}{f': {self.reason}' if self.reason else ''}, "
                f"confidence {self.confidence:.2f}, "
                f"{len(self.matches)} matches, {self.quality['num_inliers']} inliers, "
                f"transform {self.transform.model if self.transform else None})")


def _residuals(info: dict) -> dict:
    """Residuals of the final matches under the returned transform (px; shares of the matches)."""
    stats = (info.get("residuals") or {}).get("transform") or {}
    return {"residual_median_px": stats.get("median_px"), "within_3px": stats.get("within_3px"),
            "within_5px": stats.get("within_5px"), "within_10px": stats.get("within_10px")}


def _image(x: ImageLike, name: str, max_pixels: int) -> tuple[np.ndarray, Path | None]:
    if isinstance(x, (str, Path)):
        return read_image(x, max_pixels), Path(x)
    return check_image_array(x, name, max_pixels), None


class Session:
    """The runtime, pipeline and model opened once, for registering many pairs.

    Parameters
    ----------
    config : path or mapping, optional
        A YAML file laid over configs/default.yaml, or a mapping of the same shape,
        e.g. ``{"matching": {"knn_thresh": 0.8}}``.
    pipeline : path, optional
        A ``.pipeline`` file (default: the shipped one, the bf16 model on OpenVINO).
    runtime : "auto" | "ascend" | "local", optional
        The MindX SDK or this project's local runtime (default auto: the SDK where installed).
    model : str, optional
        A shipped model by name instead of ``pipeline`` ("bf16", "fp32", ...:
        ``superretina.models.shipped_models()``).
    device : "auto" | "cpu" | "gpu", optional
        Where the local runtime's engine runs the model (ONNX Runtime CUDA, OpenVINO GPU,
        PyTorch CUDA); "gpu" without one is an ``AppError`` saying what is missing.

    Thread-safe: several threads may call :meth:`register` at once (pairs in flight together).
    """

    def __init__(self, config: str | Path | Mapping | None = None, pipeline: str | Path | None = None,
                 runtime: str | None = None, *, model: str | None = None, device: str | None = None):
        self._app = open_app(config, None if pipeline is None else Path(pipeline), runtime, model=model, device=device)

    @property
    def config(self) -> dict:
        return self._app.config

    @property
    def provenance(self) -> dict:
        """What this session's results say produced them (package version, model and sha256, the device
        and engine that run the model, ...)."""
        return self._app.provenance

    def register(self, query: ImageLike, refer: ImageLike, *, paths: tuple | None = None) -> Registration:
        """Register ``query`` onto ``refer`` (paths or arrays); see the module docstring.

        ``paths``: for arrays read from files, the (query, refer) files, recorded in result.json.
        """
        limit = self._app.config["input"]["max_pixels"]
        q, q_path = _image(query, "query", limit)
        r, r_path = _image(refer, "refer", limit)
        if paths is not None:
            q_path, r_path = (None if p is None else Path(p) for p in paths)
        raw = self._app.registrar.register_images(q, r)
        info = result_json(raw, q_path, r_path, self._app.provenance)
        return Registration(info, raw, (q, r), self._app.config)

    def close(self) -> None:
        self._app.close()

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def register(query: ImageLike, refer: ImageLike, *, config: str | Path | Mapping | None = None,
             pipeline: str | Path | None = None, runtime: str | None = None, model: str | None = None,
             device: str | None = None) -> Registration:
    """Register one pair: ``query`` is mapped onto ``refer``. Options as :class:`Session`.

    Opens and closes the runtime (about a second); for many pairs use a :class:`Session`.
    """
    with Session(config, pipeline, runtime, model=model, device=device) as session:
        return session.register(query, refer)


MAX_RESULT_BYTES = 1 << 30   # a result.json of 100,000 keypoints per image is ~10 MB


def load_result(path: str | Path) -> Registration:
    """A saved result.json (or the folder holding it) as a :class:`Registration`.

    Raises
    ------
    ResultFileError
        The only error it raises, one line naming the file: missing, not a regular file, too
        large, not JSON (nested too deeply included), another schema_version, or content that
        does not hold together (``result_check.check_result``: shapes, finite numbers, counts).
    """
    from .files import InputFileError, read_regular
    from .result_check import check_result

    path = Path(path)
    if path.is_dir():
        path = path / "result.json"
    try:
        info = json.loads(read_regular(path, MAX_RESULT_BYTES, "result.json")[0])
    except OSError as exc:
        raise ResultFileError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except InputFileError as exc:
        raise ResultFileError(f"{path}: {exc}") from None
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError are ValueErrors
        raise ResultFileError(f"{path}: not a JSON file ({type(exc).__name__}: {str(exc)[:200]})") from None
    version = info.get("schema_version") if isinstance(info, dict) else None
    if version != SCHEMA_VERSION:
        raise ResultFileError(f"{path}: result.json schema_version {repr(version)[:40]}, this version reads "
                              f"{SCHEMA_VERSION} (register the pair again)")
    try:
        check_result(info)
        return Registration(info)
    except Exception as exc:  # noqa: BLE001 - whatever hostile content raises, the caller gets one type
        raise ResultFileError(f"{path}: malformed result.json ({str(exc)[:300] or type(exc).__name__})") from None
