"""A saved registration's transform in the forms other tools read (``superretina export-transform``).

Three formats, all of the transform result.json returns (``transform``: the homography or the
quadratic), query → reference in original pixels (x right, y down, pixel centres at integers:
the convention of OpenCV, scikit-image's ``(col, row)`` coordinates and ITK's physical space
with origin 0, spacing 1, identity direction):

``skimage``
    JSON with the parameters of scikit-image's ``ProjectiveTransform(matrix=...)`` (homography)
    or ``PolynomialTransform(params, order 2)`` (quadratic: the same basis ``1, x, y, x², xy,
    y²``, the normalisation folded into the coefficients, so it maps query to reference pixels
    exactly as the result does). Both map query points to reference points.
``opencv-maps``
    ``.npz`` with ``map_x``, ``map_y`` (reference height × width, float32): the query pixel shown
    at each reference pixel, for ``cv2.remap(query, map_x, map_y, cv2.INTER_LINEAR)``.
``displacement``
    A dense displacement field on the reference grid, ``.mha`` (MetaImage, written here with
    numpy) or ``.nii.gz`` (through SimpleITK, where installed): at reference point p the
    vector ``q(p) - p`` to the query point it shows, which is ITK's convention for a
    ``DisplacementFieldTransform`` resampling the query (moving) onto the reference (fixed).

Where a quadratic has no inverse (far outside the overlap) the maps and the field point far
outside the query (-1e5 px), so that resampling shows background there.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Union

import numpy as np

from .homography import transform_points
from .outputs import write_file
from .transform import HomographyTransform, QuadraticTransform, inverse_maps, transform_from_json

FORMATS = ("skimage", "opencv-maps", "displacement")
DEFAULT_NAMES = {"skimage": "transform_skimage.json", "opencv-maps": "transform_maps.npz",
                 "displacement": "displacement.mha"}
MAP_STEP = 8   # px between exactly inverted points of a quadratic's maps (transform.inverse_maps)
COORDINATES = "query -> reference, original pixels (x right, y down, pixel centres at integers)"


class ExportError(ValueError):
    """A result that has no transform to export, or an output name of the wrong kind (one line)."""


def _registration(result):
    """A :class:`superretina.api.Registration` from itself, a result.json path or its folder."""
    from .api import Registration, load_result

    return result if isinstance(result, Registration) else load_result(result)


def _transform(reg, where="the registration") -> Union[HomographyTransform, QuadraticTransform]:
    if reg.transform is None:
        raise ExportError(f"{where}: no transform to export (status {reg.status}: {reg.reason})")
    return transform_from_json(reg.transform.to_json())


def polynomial_params(t: QuadraticTransform) -> np.ndarray:
    """The quadratic in scikit-image's ``PolynomialTransform`` form: (2, 6) coefficients of
    ``1, x, y, x², xy, y²`` of the query pixel, giving reference pixels.

    Expands ``r = (a · basis((x - c_q) s_q)) / s_r + c_r``: with ``u = s x + t`` (``t = -s c``)
    per axis, each normalised basis term is a fixed combination of the pixel basis terms.
    """
    s = t.query_scale
    tx, ty = -s * t.query_centre
    # Rows: normalised terms 1, u, v, u², uv, v²; columns: pixel terms 1, x, y, x², xy, y².
    M = np.array([
        [1, 0, 0, 0, 0, 0],
        [tx, s, 0, 0, 0, 0],
        [ty, 0, s, 0, 0, 0],
        [tx * tx, 2 * tx * s, 0, s * s, 0, 0],
        [tx * ty, ty * s, tx * s, 0, s * s, 0],
        [ty * ty, 0, 2 * ty * s, 0, 0, s * s],
    ], np.float64)
    params = t.coeffs @ M / t.reference_scale
    params[:, 0] += t.reference_centre
    return params


def skimage_params(result) -> dict:
    """The scikit-image transform of a result (see the module docstring): a JSON-ready dict with
    ``class``, ``params`` (quadratic, (2, 6)) or ``matrix`` (homography, (3, 3)) and ``usage``."""
    reg = _registration(result)
    t = _transform(reg)
    out = {"format": "skimage", "direction": COORDINATES, "model": t.model,
           "query_size": {"height": reg.query_size[0], "width": reg.query_size[1]},
           "refer_size": {"height": reg.refer_size[0], "width": reg.refer_size[1]}}
    if isinstance(t, HomographyTransform):
        out.update({"class": "ProjectiveTransform", "matrix": t.H.tolist(),
                    "usage": "skimage.transform.ProjectiveTransform(matrix=np.array(matrix)): query (x, y) -> "
                             "reference; warp(query, tform.inverse, output_shape=refer shape) aligns the query"})
    else:
        out.update({"class": "PolynomialTransform", "order": 2, "basis": ["1", "x", "y", "x^2", "xy", "y^2"],
                    "params": polynomial_params(t).tolist(),
                    "usage": "skimage.transform.PolynomialTransform(np.array(params)): query (x, y) -> reference "
                             "(it has no closed-form inverse: warp with the opencv-maps or displacement export)"})
    return out


def opencv_maps(result) -> tuple[np.ndarray, np.ndarray]:
    """``cv2.remap`` maps (map_x, map_y), each (reference H, W) float32: the query pixel shown at
    each reference pixel (a homography exactly per pixel; a quadratic inverted exactly every
    ``MAP_STEP`` pixels and interpolated between, ``transform.inverse_maps``)."""
    reg = _registration(result)
    t = _transform(reg)
    h, w = reg.refer_size
    if isinstance(t, HomographyTransform):
        gx, gy = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
        q = transform_points(np.linalg.inv(t.H), np.stack([gx.ravel(), gy.ravel()], 1))
        q = np.where(np.isfinite(q), q, -1e5).astype(np.float32)
        return q[:, 0].reshape(h, w), q[:, 1].reshape(h, w)
    # A finer grid than the pictures' (32 px): the interpolation error falls with its square, to
    # ~1e-4 px at FIRE curvature and below 0.01 px for ten times as curved a retina.
    mx, my = inverse_maps(t, (w, h), (reg.query_size[1], reg.query_size[0]), step=MAP_STEP)
    return np.ascontiguousarray(mx), np.ascontiguousarray(my)


def displacement_field(result) -> np.ndarray:
    """(reference H, W, 2) float32: at reference pixel (x, y) the vector to the query point it
    shows, ``(map_x - x, map_y - y)`` (ITK's displacement of the fixed → moving transform)."""
    mx, my = opencv_maps(result)
    h, w = mx.shape
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return np.stack([mx - gx, my - gy], axis=2)


def mha_bytes(field: np.ndarray) -> bytes:
    """A MetaImage (.mha) of a (H, W, 2) float32 vector field: origin 0, spacing 1, identity
    direction (ITK physical coordinates = pixel coordinates). Not compressed: float maps hardly
    compress and compressing is slow (measured in docs/clinic-and-tools.md)."""
    field = np.ascontiguousarray(field, dtype="<f4")
    h, w, c = field.shape
    data = field.tobytes()   # x fastest, the components interleaved: ITK's order
    header = "\n".join([
        "ObjectType = Image", "NDims = 2", "BinaryData = True", "BinaryDataByteOrderMSB = False",
        "CompressedData = False", "TransformMatrix = 1 0 0 1",
        "Offset = 0 0", "CenterOfRotation = 0 0", "AnatomicalOrientation = ??", "ElementSpacing = 1 1",
        f"DimSize = {w} {h}", f"ElementNumberOfChannels = {c}", "ElementType = MET_FLOAT",
        "ElementDataFile = LOCAL"]) + "\n"
    return header.encode("ascii") + data


def export_transform(result, fmt: str, out: Union[str, Path, None] = None) -> Path:
    """Write a result's transform in format ``fmt`` (one of :data:`FORMATS`); returns the file.

    Parameters
    ----------
    result : Registration, or path of a result.json or of its folder
    fmt : {'skimage', 'opencv-maps', 'displacement'}
    out : path, optional
        The file to write (default: :data:`DEFAULT_NAMES` beside the result.json, or in the
        current folder for an in-memory registration). ``displacement`` writes ``.mha`` itself
        and ``.nii.gz`` / ``.nii`` through SimpleITK.

    Raises
    ------
    ExportError
        Unknown format, wrong file suffix, a failed registration (no transform), ``.nii.gz``
        without SimpleITK.
    superretina.api.ResultFileError
        A result.json that cannot be read.
    """
    if fmt not in FORMATS:
        raise ExportError(f"--format: expected one of {', '.join(FORMATS)}, got {fmt!r}")
    if out is None:
        base = Path(result) if isinstance(result, (str, Path)) else Path(".")
        base = base if base.is_dir() or not isinstance(result, (str, Path)) else base.parent
        out = base / DEFAULT_NAMES[fmt]
    out = Path(out)
    name = out.name.lower()
    wanted = {"skimage": (".json",), "opencv-maps": (".npz",), "displacement": (".mha", ".nii.gz", ".nii")}[fmt]
    if not name.endswith(wanted):
        raise ExportError(f"{out}: a {fmt} export is written as {' or '.join(wanted)}")
    if out.is_dir():
        raise ExportError(f"{out}: is a folder, expected the name of the file to write")
    reg = _registration(result)
    _transform(reg, str(result) if isinstance(result, (str, Path)) else "the registration")
    if fmt == "skimage":
        return write_file(out, (json.dumps(skimage_params(reg), indent=1) + "\n").encode())
    if fmt == "opencv-maps":
        import io

        mx, my = opencv_maps(reg)
        buf = io.BytesIO()
        np.savez(buf, map_x=mx, map_y=my, direction=np.array(COORDINATES),
                            usage=np.array("cv2.remap(query, map_x, map_y, cv2.INTER_LINEAR) -> query in the "
                                           "reference frame"))
        return write_file(out, buf.getvalue())
    field = displacement_field(reg)
    if name.endswith(".mha"):
        return write_file(out, mha_bytes(field))
    try:
        import SimpleITK as sitk
    except ImportError:
        raise ExportError(f"{out}: writing NIfTI needs SimpleITK (pip install SimpleITK); "
                          "a .mha file is written without it") from None
    import tempfile

    image = sitk.GetImageFromArray(field.astype(np.float64), isVector=True)   # origin 0, spacing 1, identity
    with tempfile.TemporaryDirectory(prefix="superretina-export-") as tmp:
        # SimpleITK writes to a name of its own choosing only: a private folder, then our no-follow write.
        scratch = Path(tmp) / ("field.nii.gz" if name.endswith(".gz") else "field.nii")
        sitk.WriteImage(image, str(scratch), True)
        return write_file(out, scratch.read_bytes())


def main(argv=None, prog: str = "superretina export-transform") -> int:
    """``superretina export-transform RESULT --format F [--out FILE]``: exit 0, or 2 with one line."""
    ap = argparse.ArgumentParser(prog=prog, description=(
        "Write the transform of a saved registration (RESULT: result.json or its folder) for other tools: "
        "skimage (ProjectiveTransform / PolynomialTransform(order=2) parameters, JSON), opencv-maps "
        "(cv2.remap maps, .npz) or displacement (dense displacement field on the reference grid that ITK and "
        "SimpleITK read: .mha, or .nii.gz with SimpleITK). All map query to reference pixels."))
    ap.add_argument("result", type=Path, help="result.json of a registration, or the folder holding it")
    ap.add_argument("--format", required=True, choices=FORMATS, help="what to write")
    ap.add_argument("--out", type=Path, help="file to write (default beside RESULT: "
                    + ", ".join(f"{k}: {v}" for k, v in DEFAULT_NAMES.items()) + ")")
    args = ap.parse_args(argv)
    path = export_transform(args.result, args.format, args.out)
    print(f"wrote {path}")
    return 0
