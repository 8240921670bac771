"""Speed benchmark of pair registration: this project's stream pipeline against PyTorch eager.

    bash run.sh bench [--runs 5] [--model PATH ...] [--json OUT]
    python benchmarks/bench.py --help          (with the package installed, e.g. .venv/bin/python)

Pairs: scikit-image's CC0 retina photograph resized to each ``--sizes`` side (default 2912, the
FIRE size, and 1382); the query is the demo's warp of it (known homography, darker, uneven
light, blurred: ``superretina.demo.make_pair``). Both are written as JPEG (quality 95) into a
temporary folder, so "read" is a real file read + JPEG decode.

Each side runs in its own worker process, so that its peak memory is its own, and the sides
take turns run by run, so that a change of machine load hits both alike:

* ``<model file name>``: the application's driver: ``read_pair``, ``Registrar.register_images``
  through the pipeline's stream (mxpi_tensorinfer's engine by suffix: ONNX Runtime for .onnx,
  OpenVINO for .xml, PyTorch for TorchScript .pt; each side's engine is printed) with the matching trick,
  then ``result_json`` + ``write_outputs`` (pictures and result.json);
* ``torch eager``: the same steps done the reference's way on the same weights: cv2 read,
  float64 enhancement, PIL bilinear resize, the PyTorch network (eager, float32), PyTorch
  simple NMS / grid_sample (benchmarks/reference_torch.py, the plain-PyTorch §2 implementation),
  cv2.BFMatcher 2-NN + ratio test, cv2.findHomography LMEDS, the matching trick (warped query
  alone through the network again, the reference's outputs reused), the same output files.

* ``0.2.0 (git 6edbbc6)`` (``--baseline REV``, repeatable; ``none`` for no such side): the same
  driver steps run by an earlier version of this application, its ``python/ plugins/ pipeline/
  configs/`` extracted from git into a temporary folder (``batch_throughput.extract``), on its
  own default model (the file its default pipeline names, from this tree's ``model/``; until
  0.5.0's bench it ran the first ``--model`` instead, which was the same file while the default
  had not changed), with its own default configuration: the version issue 19 measures against.
  The line ``end to end with pictures: ... = 0.NNx`` is this tree's end-to-end median over each
  such side's, from the same run.

Reported per stage: median over ``--runs`` runs after ``--warmup`` untimed runs; the ratio is
torch time / pipeline time (> 1: the pipeline is faster). Stages of the pipeline come from the
driver's own timer (read, enhance, inference, keypoints, descriptors, matching, homography and
the matching trick's trick_* stages: what result.json reports under ``seconds``).
"post-processing per image" is (NMS + descriptors + matching + homography) / 2 of the first pass.
Peak memory is the worker process's own peak resident size (:func:`peak_rss_mb`: VmHWM of
/proc/self/status, ``ru_maxrss`` where there is none; the whole process: interpreter, runtime,
model, arena, images), measured per side and per size.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "python") not in sys.path:  # a checkout without the package installed
    sys.path.insert(1, str(ROOT / "python"))

if str(ROOT) not in sys.path:  # benchmarks.batch_throughput's git extraction
    sys.path.insert(1, str(ROOT))

from mxlocal.cpu import physical_cores  # noqa: E402

from benchmarks.batch_throughput import DEFAULT_BASELINE, extract  # noqa: E402

from superretina.config import DEFAULT_PIPELINE  # noqa: E402

DEFAULT_SIZES = (2912, 1382)
JPEG_QUALITY = 95
# Table rows: (key, label). Keys starting with "trick." are parts of "matching trick".
ROWS = [
    ("read", "read (2 JPEG decodes)"),
    ("enhance", "enhance + model input"),
    ("inference", "inference (2 images)"),
    ("nms", "NMS + threshold (2 maps)"),
    ("descriptors", "descriptors + scaling (2)"),
    ("matching", "matching"),
    ("homography", "homography"),
    ("matching trick", "matching trick"),
    ("trick.warp", "  warp + model input"),
    ("trick.inference", "  inference (1 image)"),
    ("trick.post", "  NMS..homography"),
    ("transform", "transform (quadratic fit, choice)"),
    ("refine", "guided matching + patch correlation"),
    ("outputs", "outputs (pictures + json)"),
    ("outputs_cpu", "  outputs, CPU seconds"),
    ("total", "end to end"),
    ("cpu", "CPU seconds (process)"),
    ("post_per_image", "post-processing / image"),
]


class BenchError(RuntimeError):
    """A problem the user can fix (missing model, no float32 weights for the baseline)."""


# --------------------------------------------------------------------------- pairs and helpers
def make_bench_pair(size: int, folder: Path) -> dict:
    """Write ``query.jpg`` / ``refer.jpg`` of side ``size`` into ``folder``; returns paths and truth."""
    import cv2

    from superretina.demo import make_pair, retina_bgr

    src = retina_bgr()
    interp = cv2.INTER_AREA if size < src.shape[0] else cv2.INTER_CUBIC
    refer = cv2.resize(src, (size, size), interpolation=interp)
    query, G, pts = make_pair(refer)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, img in (("query", query), ("refer", refer)):
        paths[name] = folder / f"{name}.jpg"
        if not cv2.imwrite(str(paths[name]), img, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]):
            raise BenchError(f"{paths[name]}: could not write the benchmark image")
    return {"query": str(paths["query"]), "refer": str(paths["refer"]), "G": G.tolist(),
            "points": pts.tolist(), "size": size}


def pipeline_with_model(model: Path, dst: Path, pipeline: Path = DEFAULT_PIPELINE) -> Path:
    """Copy of ``pipeline`` whose mxpi_tensorinfer ``modelPath`` is ``model`` (absolute), with the
    settings file of a shipped pipeline that runs this model (e.g. int8's keypoint threshold,
    ``config.pipeline_settings``) beside it, so that the model runs as the application runs it."""
    cfg = json.loads(Path(pipeline).read_text())
    found = False
    for elements in cfg.values():
        if not isinstance(elements, dict):
            continue
        for el in elements.values():
            if isinstance(el, dict) and el.get("factory") == "mxpi_tensorinfer":
                el.setdefault("props", {})["modelPath"] = str(Path(model).resolve())
                found = True
    if not found:
        raise BenchError(f"{pipeline}: no mxpi_tensorinfer element to point at {model}")
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_text(json.dumps(cfg, indent=4))
    settings = shipped_settings(model)
    if settings is not None:
        shutil.copy(settings, dst.with_suffix(".yaml"))
    return dst


def shipped_settings(model: Path) -> Path | None:
    """The settings file of a shipped pipeline whose model is ``model``, or None."""
    from superretina.config import pipeline_settings
    from superretina.stream_client import model_file, read_layout

    for pipeline in sorted(DEFAULT_PIPELINE.parent.glob("*.pipeline")):
        settings = pipeline_settings(pipeline)
        runs = model_file(pipeline, read_layout(pipeline).model_path).resolve()
        if settings is not None and runs == Path(model).resolve():
            return settings
    return None


def baseline_weights(models: list[Path]) -> Path:
    """Float32 weights for the PyTorch side: the first .onnx/.pth among ``models``, else the
    shipped checkpoint (an OpenVINO IR is the same network, exported from it)."""
    for model in models:
        if model.suffix.lower() in (".onnx", ".pth"):  # a .pt model is TorchScript, not a checkpoint
            return model
    return ROOT / "model" / "superretina.pth"


def baseline_default_model(pipeline: Path) -> Path:
    """The model an earlier version's default pipeline names, from this tree's ``model/`` (git
    holds no model files; 0.2.0's default is ``superretina_bf16.xml``, the published head): what
    that version registered with, which is what issue 19 measures against."""
    from superretina.stream_client import PipelineError

    try:
        name = default_model(pipeline).name
    except PipelineError as exc:
        raise BenchError(f"{pipeline}: {exc}; give --baseline-model") from None
    model = ROOT / "model" / name
    if not model.is_file():
        raise BenchError(f"{pipeline}: its default model {name!r} is not in {ROOT / 'model'}; give --baseline-model")
    return model


def default_model(pipeline: Path = DEFAULT_PIPELINE) -> Path:
    """The model the pipeline file points at (model/superretina_bf16.xml for the default pipeline)."""
    from superretina.stream_client import model_file, read_layout

    return model_file(pipeline, read_layout(pipeline).model_path)


def homography_distance(Ha, Hb, pts) -> float:
    """Mean distance (pixels) between the images of ``pts`` under two homographies; inf if one is missing."""
    from superretina.homography import transform_points

    if Ha is None or Hb is None:
        return float("inf")
    return float(np.linalg.norm(transform_points(Ha, pts) - transform_points(Hb, pts), axis=1).mean())


def _control_point_error(H, G, pts) -> float:
    from superretina.demo import control_point_error

    return control_point_error(None if H is None else np.asarray(H), np.asarray(G), np.asarray(pts))


def peak_rss_mb() -> float:
    """This process's peak resident memory, MB: VmHWM of /proc/self/status where there is one.

    Not ru_maxrss alone: Linux carries it across fork+exec, so a child started by a large parent
    (a test session, say) would report the parent's size.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


# --------------------------------------------------------------------------- workers
class _Calls:
    """Durations of the PyTorch baseline's steps, in call order."""

    def __init__(self):
        self.log: dict[str, list[float]] = {}

    def take(self, name: str, i: int) -> float:
        seq = self.log.get(name, [])
        return seq[i] if i < len(seq) else 0.0


def _lenient(estimate):
    """``estimate_homography`` that, like the reference, accepts whatever findHomography returns."""
    def lenient(pts_q, pts_r, method="LMEDS", reproj_threshold=None, min_matches=4, **kw):
        import cv2

        from superretina.homography import DEFAULT_THRESHOLDS, METHODS, HomographyResult

        res = estimate(pts_q, pts_r, method, reproj_threshold, min_matches, **kw)
        if res.ok or len(pts_q) < 4:
            return res
        name = str(method).upper()
        H, mask = cv2.findHomography(np.float32(pts_q), np.float32(pts_r), METHODS[name],
                                     float(reproj_threshold or DEFAULT_THRESHOLDS[name]))
        if H is None or not np.isfinite(H).all() or H[2, 2] == 0:
            return res
        inl = mask.ravel().astype(bool)
        return HomographyResult(H / H[2, 2], inl, int(inl.sum()), float(inl.mean()), None, name)
    return lenient


class PipelineSide:
    """The application's driver on one model (runs inside a worker process)."""

    def __init__(self, spec: dict):
        from superretina.app import open_app
        from superretina.homography import estimate_homography

        from mxlocal.model_runtime import open_model

        self.spec = spec
        # What mxpi_tensorinfer runs the model on; loaded and dropped before the app opens, so
        # that this second copy does not add to the side's peak memory.
        self.engine = open_model(Path(spec["model"])).engine
        self.app = open_app(spec.get("config"), Path(spec["pipeline"]), "local")
        if spec.get("max_keypoints") is not None:
            self.app.config["keypoints"]["max_keypoints"] = int(spec["max_keypoints"])
        if spec.get("no_sanity_checks"):
            # Untrained weights give degenerate first homographies that the driver rejects, and
            # then it skips the matching trick; the reference (no checks) would run it.
            self.app.registrar.estimator = _lenient(estimate_homography)
        self.out = Path(spec["out"])

    def run(self) -> dict:
        from superretina.image_io import read_pair
        from superretina.outputs import result_json, write_outputs
        from superretina.registrar import Timer

        t = Timer()
        c0, w0 = time.process_time(), time.perf_counter()
        with t("read"):
            q, r = read_pair(self.spec["query"], self.spec["refer"])
        res = self.app.registrar.register_images(q, r, t)
        c1 = time.process_time()
        with t("outputs"):
            info = result_json(res, self.spec["query"], self.spec["refer"], self.app.provenance)
            write_outputs(res, q, r, self.out, info, self.app.config)
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
        outputs_cpu = time.process_time() - c1
        s = t.seconds
        trick_post = sum(s.get(f"trick_{k}", 0.0) for k in ("keypoints", "descriptors", "matching", "homography"))
        stages = {
            "read": s.get("read", 0.0), "enhance": s.get("enhance", 0.0), "inference": s.get("inference", 0.0),
            "nms": s.get("keypoints", 0.0), "descriptors": s.get("descriptors", 0.0),
            "matching": s.get("matching", 0.0), "homography": s.get("homography", 0.0),
            "trick.warp": s.get("trick_warp", 0.0), "trick.inference": s.get("trick_inference", 0.0),
            "trick.post": trick_post, "transform": s.get("transform", 0.0), "outputs": s.get("outputs", 0.0),
            "refine": s.get("guided", 0.0) + s.get("patch_refine", 0.0),
            "total": wall, "cpu": cpu, "outputs_cpu": outputs_cpu,
        }
        stages["matching trick"] = stages["trick.warp"] + stages["trick.inference"] + trick_post
        stages["post_per_image"] = (stages["nms"] + stages["descriptors"] + stages["matching"] + stages["homography"]) / 2
        return {"stages": stages, "status": res.status, "H": None if res.H is None else res.H.tolist(),
                "keypoints": [len(res.query.xy), len(res.refer.xy)], "matches": int(len(res.final.matches)),
                "inliers": int(res.final.homography.num_inliers)}

    def close(self) -> None:
        self.app.close()


class TorchSide:
    """The reference's steps in PyTorch eager on the same float32 weights (worker process)."""

    def __init__(self, spec: dict):
        import torch

        from superretina.config import load_config

        self.engine = f"torch {torch.__version__} eager fp32"

        if str(ROOT / "benchmarks") not in sys.path:  # reference_torch.py: the plain-PyTorch §2, beside this file
            sys.path.insert(0, str(ROOT / "benchmarks"))
        import reference_torch as ref
        self.ref, self.torch, self.spec = ref, torch, spec
        torch.set_num_threads(int(spec["threads"]))
        self.cfg = load_config(spec.get("config"))
        if spec.get("max_keypoints") is not None:
            self.cfg["keypoints"]["max_keypoints"] = int(spec["max_keypoints"])
        self.frame = (self.cfg["model"]["image_height"], self.cfg["model"]["image_width"])
        self.net = torch_network(Path(spec["weights"]))
        self.out = Path(spec["out"])

    # -- the reference's pre-processing, literally (float64 arrays, PIL bilinear resize) --------
    @staticmethod
    def enhance(bgr: np.ndarray) -> np.ndarray:
        import cv2

        green = bgr[:, :, 1].astype(np.float64)
        z = (green - green.mean()) / (green.std() + 1e-6)
        u8 = ((z - z.min()) / (z.max() - z.min()) * 255).astype(np.uint8)
        clahe = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8)).apply(u8)
        table = np.array([((i / 255.0) ** (1.0 / 1.2)) * 255 for i in range(256)]).astype(np.uint8)
        return cv2.LUT(clahe, table).astype(np.float32) / 255.0

    def model_input(self, enhanced: np.ndarray):
        from PIL import Image

        img = Image.fromarray((enhanced * 255).astype(np.uint8))
        small = np.asarray(img.resize((self.frame[1], self.frame[0]), Image.BILINEAR), np.float32) / 255.0
        return self.torch.from_numpy(small)[None]

    def features(self, det, desc, size):
        """(model xy (K,2) tensor, original xy (K,2) float64 truncated as the reference, descriptors)."""
        k = self.cfg["keypoints"]
        kp, scores = self.ref.ref_detect(det[None], k["nms_size"], k["nms_thresh"], k["border"])[0]
        t0 = time.perf_counter()
        if 0 < k["max_keypoints"] < len(scores):
            keep = self.torch.sort(self.torch.argsort(-scores, stable=True)[: k["max_keypoints"]]).values
            kp = kp[keep]
        d = self.ref.ref_sample(kp, desc).numpy()
        (hm, wm), (h, w) = self.frame, size
        xy = np.array([(int(p[0] / wm * w), int(p[1] / hm * h)) for p in kp], np.float64).reshape(-1, 2)
        return kp, xy, d, time.perf_counter() - t0

    def pass_(self, x, sizes, calls: _Calls):
        torch = self.torch
        with torch.no_grad():
            t0 = time.perf_counter()
            det, desc = self.net(x)
            calls.log.setdefault("infer", []).append(time.perf_counter() - t0)
        feats = []
        for i, size in enumerate(sizes):
            t0 = time.perf_counter()
            kp, xy, d, t_desc = self.features(det[i], desc[i], size)
            total = time.perf_counter() - t0
            calls.log.setdefault("nms", []).append(total - t_desc)
            calls.log.setdefault("descriptors", []).append(t_desc)
            feats.append((kp, xy, d))
        return feats

    def match(self, fq, fr, calls: _Calls):
        t0 = time.perf_counter()
        m = self.ref.ref_match(fq[2], fr[2], self.cfg["matching"]["knn_thresh"])
        t1 = time.perf_counter()
        H, mask = self.ref.ref_homography(fq[1][m[:, 0]], fr[1][m[:, 1]])
        t2 = time.perf_counter()
        calls.log.setdefault("matching", []).append(t1 - t0)
        calls.log.setdefault("homography", []).append(t2 - t1)
        return m, H, mask

    def run(self) -> dict:
        import cv2

        calls, T = _Calls(), {}
        c0, w0 = time.process_time(), time.perf_counter()

        def lap(key, t0):
            T[key] = T.get(key, 0.0) + time.perf_counter() - t0
            return time.perf_counter()

        t = time.perf_counter()
        q = cv2.imread(self.spec["query"], cv2.IMREAD_COLOR)
        r = cv2.imread(self.spec["refer"], cv2.IMREAD_COLOR)
        t = lap("read", t)
        eq, er = self.enhance(q), self.enhance(r)
        x = self.torch.stack([self.model_input(eq), self.model_input(er)])
        t = lap("enhance", t)
        fq, fr = self.pass_(x, [eq.shape, er.shape], calls)
        m, H1, mask = self.match(fq, fr, calls)
        t = time.perf_counter()
        H, second = H1, None
        if H1 is not None:
            warped = cv2.warpPerspective(eq, H1, (er.shape[1], er.shape[0]), flags=cv2.INTER_LINEAR)
            fw, = self.pass_(self.model_input(warped)[None], [er.shape], calls)
            m2, H2, mask2 = self.match(fw, fr, calls)
            if H2 is not None:
                H = H2 @ H1
                H = H / H[2, 2]
            second = (fw, m2, H2, mask2)
            t = lap("matching trick", t)
        res = self._result(q, r, eq, er, fq, fr, m, H1, mask, second, H)
        from superretina.outputs import result_json, write_outputs

        info = result_json(res, self.spec["query"], self.spec["refer"],
                           {"model": self.spec["weights"], "pipeline": "torch eager", "runtime": "torch"})
        write_outputs(res, q, r, self.out, info, self.cfg)
        lap("outputs", t)
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
        c = calls
        trick = T.get("matching trick", 0.0)
        trick_inf = c.take("infer", 1)
        trick_post = c.take("nms", 2) + c.take("descriptors", 2) + c.take("matching", 1) + c.take("homography", 1)
        stages = {
            "read": T["read"], "enhance": T["enhance"], "inference": c.take("infer", 0),
            "nms": c.take("nms", 0) + c.take("nms", 1), "descriptors": c.take("descriptors", 0) + c.take("descriptors", 1),
            "matching": c.take("matching", 0), "homography": c.take("homography", 0),
            "matching trick": trick, "trick.warp": max(trick - trick_inf - trick_post, 0.0) if trick else 0.0,
            "trick.inference": trick_inf, "trick.post": trick_post, "transform": 0.0, "outputs": T["outputs"],
            "total": wall, "cpu": cpu,
        }
        stages["post_per_image"] = (stages["nms"] + stages["descriptors"] + stages["matching"] + stages["homography"]) / 2
        return {"stages": stages, "status": res.status, "H": None if H is None else np.asarray(H).tolist(),
                "keypoints": [len(fq[1]), len(fr[1])], "matches": int(len(res.final.matches)),
                "inliers": int(res.final.homography.num_inliers)}

    def _result(self, q, r, eq, er, fq, fr, m, H1, mask, second, H):
        """The baseline's outcome as a RegistrationResult, so that it writes the same files."""
        from superretina.homography import HomographyResult
        from superretina.registrar import Features, RegistrationResult, Stage

        def stage(matches, Hm, msk):
            inl = np.zeros(len(matches), bool) if msk is None else msk.ravel().astype(bool)
            n = int(inl.sum())
            ok = Hm is not None  # the reference uses any homography findHomography returns
            return Stage(matches, HomographyResult(Hm if ok else None, inl, n, n / len(matches) if len(matches) else 0.0,
                                                   None if ok else "no homography"))

        def feats(f):
            return Features(f[0].numpy(), f[1], f[2])

        first = stage(m, H1, mask)
        res = RegistrationResult("registered" if first.homography.ok else "failed",
                                 None if first.homography.ok else "no homography", H if first.homography.ok else None,
                                 feats(fq), feats(fr), first, query_size=eq.shape, refer_size=er.shape,
                                 query_equalised=(eq * 255).astype(np.uint8), refer_equalised=(er * 255).astype(np.uint8))
        if second is not None:
            fw, m2, H2, mask2 = second
            res.second, res.warped_query = stage(m2, H2, mask2), feats(fw)
        return res

    def close(self) -> None:
        pass


def torch_network(path: Path):
    """SuperRetinaNet (eval) with the weights of a float32 ONNX export or a ``{'net': ...}`` checkpoint."""
    import torch

    from superretina.model.network import ARCHITECTURES, architecture_of, infer_widths, load_checkpoint

    if path.suffix.lower() in (".pth", ".pt"):
        return load_checkpoint(path)
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    state = {i.name: torch.from_numpy(numpy_helper.to_array(i).copy()) for i in model.graph.initializer}
    try:
        net = ARCHITECTURES[architecture_of(state)](infer_widths(state))  # published or fast head
        net.load_state_dict({k: state[k] for k in net.state_dict()}, strict=True)
    except (KeyError, RuntimeError) as exc:
        raise BenchError(f"{path}: no float32 SuperRetina weights to run in PyTorch ({exc}); "
                         "give the float32 export or checkpoint with --torch-weights") from None
    return net.eval()


def use_code(python_dir: str) -> None:
    """Make ``python_dir``'s superretina and mxlocal the ones imported from now on (a worker of an
    earlier version: this module imported today's at its top, so those modules are dropped)."""
    for name in list(sys.modules):
        if name.split(".")[0] in ("superretina", "mxlocal"):
            del sys.modules[name]
    sys.path.insert(0, python_dir)


def _worker(conn, kind: str, spec: dict) -> None:
    """Worker process: build one side, then answer 'run' / 'stop' requests."""
    if kind == "pipeline":
        os.environ["MXLOCAL_INFER_THREADS"] = str(spec["threads"])
    if spec.get("code"):
        use_code(spec["code"])
    try:
        side = PipelineSide(spec) if kind == "pipeline" else TorchSide(spec)
    except Exception as exc:  # noqa: BLE001 - reported by the parent as one line
        conn.send({"error": f"{type(exc).__name__}: {exc}"})
        return
    import superretina  # the version this side's code is (an earlier one for --baseline)

    conn.send({"ready": True, "rss_mb": peak_rss_mb(), "engine": side.engine, "version": superretina.__version__})
    while True:
        msg = conn.recv()
        if msg == "run":
            try:
                conn.send(side.run())
            except Exception as exc:  # noqa: BLE001
                import traceback
                conn.send({"error": f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"})
        else:
            side.close()
            conn.send({"peak_rss_mb": peak_rss_mb()})
            return


class Worker:
    def __init__(self, name: str, kind: str, spec: dict):
        ctx = mp.get_context("spawn")  # a fresh process: its peak memory is this side's alone
        self.name, self.conn = name, None
        parent, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker, args=(child, kind, spec), daemon=True)
        self.proc.start()
        self.conn = parent
        msg = self.conn.recv()
        if "error" in msg:
            self.proc.join(5)
            raise BenchError(f"{name}: {msg['error']}")
        self.engine, self.version = msg["engine"], msg["version"]

    def run(self) -> dict:
        self.conn.send("run")
        msg = self.conn.recv()
        if "error" in msg:
            raise BenchError(f"{self.name}: {msg['error']}")
        return msg

    def stop(self) -> float:
        self.conn.send("stop")
        peak = self.conn.recv()["peak_rss_mb"]
        self.proc.join(30)
        return peak


# --------------------------------------------------------------------------- orchestration
def machine() -> dict:
    info = {"python": platform.python_version(), "platform": platform.platform(), "cpu": platform.processor(),
            "logical_cpus": os.cpu_count(), "physical_cores": physical_cores()}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                info["isa"] = sorted(f for f in flags if f.startswith(("avx512_vnni", "avx512_bf16", "amx", "avx512f", "avx2")))
                break
    except OSError:
        pass
    try:
        import onnxruntime
        info["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        pass
    gpu = _gpu_names()
    if gpu:
        info["gpu"] = gpu
    return info


def _gpu_names() -> str:
    """The NVIDIA cards' names ('' without nvidia-smi), for runs on a CUDA engine."""
    import subprocess

    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=20).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return ", ".join(line.strip() for line in out.splitlines() if line.strip())


def run_size(size: int, models: list[Path], args, tmp: Path, log) -> dict:
    pair = make_bench_pair(size, tmp / f"pair_{size}")
    sides: list[tuple[str, str, dict]] = []
    for i, model in enumerate(models):
        pipe = pipeline_with_model(model, tmp / f"pipeline_{i}.pipeline", args.pipeline)
        sides.append((model.name, "pipeline", {"pipeline": str(pipe), "model": str(model)}))
    for rev, code in args.baseline_code.items():  # earlier versions of the application, on their default model
        own = code.parent / "pipeline" / "superretina.pipeline"
        model = args.baseline_model or baseline_default_model(own)
        pipe = pipeline_with_model(model, tmp / f"pipeline_{rev}.pipeline", own)
        sides.append((baseline_name(rev), "pipeline", {"pipeline": str(pipe), "model": str(model), "code": str(code)}))
    if not args.no_torch:
        sides.append(("torch eager", "torch", {"weights": str(args.torch_weights or baseline_weights(models))}))
    workers, names = [], []
    load0 = os.getloadavg()
    try:
        for j, (name, kind, extra) in enumerate(sides):
            spec = {**extra, "query": pair["query"], "refer": pair["refer"], "threads": args.threads,
                    "config": str(args.config) if args.config else None, "max_keypoints": args.max_keypoints,
                    "no_sanity_checks": args.no_sanity_checks,
                    "out": str(tmp / f"out_{size}_{j}")}
            log(f"  starting {name} ...")
            workers.append(Worker(name, kind, spec))
            names.append(name)
        runs = {n: [] for n in names}
        for i in range(args.warmup + args.runs):
            for name, w in zip(names, workers):
                out = w.run()
                if i >= args.warmup:
                    runs[name].append(out)
            if i < args.warmup:
                log(f"  {size}px warm-up {i + 1}/{args.warmup} done")
            else:
                log(f"  {size}px run {i - args.warmup + 1}/{args.runs}: "
                    + ", ".join(f"{n} {runs[n][-1]['stages']['total']:.2f} s" for n in names))
        engines = {n: w.engine for n, w in zip(names, workers)}
        versions = {n: w.version for n, w in zip(names, workers)}
        peaks = {n: w.stop() for n, w in zip(names, workers)}
    finally:
        for w in workers:
            if w.proc.is_alive():
                w.proc.kill()
    load1 = os.getloadavg()
    result = {"size": size, "load_before": load0, "load_after": load1, "sides": {}}
    for n in names:
        rs = runs[n]
        med = {k: statistics.median(r["stages"][k] for r in rs) for k in rs[0]["stages"]}
        last = rs[-1]
        result["sides"][n] = {
            "median": med, "runs": [r["stages"] for r in rs], "peak_rss_mb": peaks[n], "engine": engines[n],
            "version": versions[n],
            "status": last["status"], "keypoints": last["keypoints"], "matches": last["matches"],
            "inliers": last["inliers"], "H": last["H"],
            "control_point_error_px": _control_point_error(last["H"], pair["G"], pair["points"]),
        }
    first = names[0]
    for n in names[1:]:
        result["sides"][n]["H_distance_to_" + first] = homography_distance(
            result["sides"][n]["H"], result["sides"][first]["H"], pair["points"])
    return result


def baseline_name(rev: str) -> str:
    """Column name of an earlier version's side: ``0.2.0 (git 6edbbc6)`` (its package version, read from git)."""
    import re
    import subprocess

    text = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:python/superretina/__init__.py"],
                          capture_output=True, text=True).stdout
    m = re.search(r'^__version__\s*=\s*"([^"]+)"', text, re.M)
    return f"{m.group(1)} (git {rev})" if m else f"git {rev}"


def ratio_lines(res: dict) -> list[str]:
    """``end to end with pictures: <this tree> / <earlier version> = 0.NNx`` for each earlier
    version's side (issue 19's measure: the first --model against it, same run, taking turns)."""
    sides = list(res["sides"])
    ours = sides[0]
    out = []
    for s in sides:
        if "(git " in s or s.startswith("git "):
            a, b = res["sides"][ours]["median"]["total"], res["sides"][s]["median"]["total"]
            out.append(f"end to end with pictures: {ours} {a:.3f} s / {s} {b:.3f} s = {a / b:.2f}x "
                       f"({res['size']}x{res['size']} pair, issue 19 asks <= 0.50x)")
    return out


def format_table(res: dict, runs: int, warmup: int) -> str:
    sides = list(res["sides"])
    base = "torch eager" if "torch eager" in sides else None
    ours = [s for s in sides if s != base]
    w0, wc = 27, max(14, *(len(s) for s in sides))
    cols = [*ours] + ([base] if base else []) + ([f"ratio {i + 1}" for i in range(len(ours))] if base else [])
    head = f"{'stage (seconds, median)':{w0}s}" + "".join(f"{c:>{wc + 1}s}" for c in cols)
    size = res["size"]
    l0, l1 = res["load_before"], res["load_after"]
    lines = [f"{size}x{size} pair, matching trick on — median of {runs} runs after {warmup} warm-up; "
             f"load average {l0[0]:.1f} → {l1[0]:.1f} on {os.cpu_count()} CPUs",
             *(f"  ratio {i + 1} = torch eager / {n}" for i, n in enumerate(ours) if base),
             *(f"  {n}: {res['sides'][n]['engine']}" for n in sides), head, "-" * len(head)]
    for key, label in ROWS:
        vals = [res["sides"][s]["median"].get(key, 0.0) for s in ours]
        row = f"{label:{w0}s}" + "".join(f"{v:{wc + 1}.3f}" for v in vals)
        if base:
            b = res["sides"][base]["median"].get(key, 0.0)
            row += f"{b:{wc + 1}.3f}"
            row += "".join(f"{(b / v if v > 1e-9 else float('nan')):{wc}.1f}x" for v in vals)
        lines.append(row)
    lines.append("-" * len(head))

    def info_row(label, fn):
        return f"{label:{w0}s}" + "".join(f"{fn(res['sides'][s]):>{wc + 1}s}" for s in ours + ([base] if base else []))

    lines.append(info_row("peak RSS, MB (VmHWM)", lambda d: f"{d['peak_rss_mb']:.0f}"))
    lines.append(info_row("keypoints query/refer", lambda d: f"{d['keypoints'][0]}/{d['keypoints'][1]}"))
    lines.append(info_row("final matches/inliers", lambda d: f"{d['matches']}/{d['inliers']}"))
    lines.append(info_row("status", lambda d: d["status"]))
    lines.append(info_row("error vs truth, px", lambda d: f"{d['control_point_error_px']:.2f}"))
    ran = {s: res["sides"][s]["median"].get("matching trick", 0.0) > 0 for s in sides}
    if len(set(ran.values())) > 1:
        lines.append("WARNING: the matching trick ran on " + ", ".join(s for s in sides if ran[s]) + " only (skipped "
                     "elsewhere: the first pass was conclusive, matching_trick_skip_inliers, or failed; PyTorch "
                     "eager always runs it, as the reference): compare end-to-end times with that in mind")
    if len(sides) > 1:
        key = "H_distance_to_" + sides[0]
        lines.append(info_row("|H - H(first column)|, px", lambda d: f"{d.get(key, 0.0):.2f}"))
    lines += ratio_lines(res)
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="bash run.sh bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Example: bash run.sh bench --runs 5 --model model/superretina_bf16.xml --model "
               "model/superretina.onnx --json out/bench.json  (both models and the PyTorch baseline in one "
               "run, so the ratios share the machine's load).")
    ap.add_argument("--runs", type=int, default=5, help="timed runs per side and size (median reported; default 5)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed runs first (default 1)")
    ap.add_argument("--model", type=Path, action="append",
                    help="model for the pipeline (.onnx, OpenVINO .xml, TorchScript .pt: the GPU through PyTorch); "
                         "repeat to compare variants in one run "
                         "(default: the modelPath of the pipeline file)")
    ap.add_argument("--pipeline", type=Path, default=DEFAULT_PIPELINE,
                    help="pipeline file whose copy runs each model (default pipeline/superretina.pipeline)")
    ap.add_argument("--torch-weights", type=Path,
                    help="float32 ONNX export or .pth checkpoint for the PyTorch baseline (default: the first "
                         ".onnx --model, else model/superretina.pth)")
    ap.add_argument("--sizes", type=lambda s: [int(v) for v in s.split(",")], default=list(DEFAULT_SIZES),
                    help="square pair sides, comma-separated (default 2912,1382)")
    ap.add_argument("--size", type=int, help="one side only (same as --sizes N)")
    ap.add_argument("--config", type=Path, help="registration parameters YAML (both sides)")
    ap.add_argument("--max-keypoints", type=int,
                    help="override keypoints.max_keypoints on both sides (e.g. 3000 with untrained weights, "
                         "whose detector fires everywhere)")
    ap.add_argument("--no-sanity-checks", action="store_true",
                    help="accept any homography findHomography returns (no degeneracy or inlier checks), as "
                         "the reference does, so that the matching trick runs on both sides even with "
                         "untrained weights (whose first homography the driver rejects)")
    ap.add_argument("--threads", type=int, default=physical_cores(),
                    help="compute threads for the inference engine and PyTorch (default: physical cores)")
    ap.add_argument("--no-torch", "--no-baseline", dest="no_torch", action="store_true",
                    help="skip the PyTorch eager side (--no-baseline: its older name)")
    ap.add_argument("--baseline", action="append", metavar="REV",
                    help=f"git revision of an earlier version of this application to run as a side on the first "
                         f"model, taking turns (default {DEFAULT_BASELINE}, version 0.2.0; repeat for several; "
                         f"'none': no such side); prints the end-to-end ratio line")
    ap.add_argument("--baseline-model", type=Path,
                    help="the model the --baseline sides run (default: the one their own default pipeline "
                         "names, from model/: 0.2.0's is superretina_bf16.xml, the published head)")
    ap.add_argument("--json", type=Path, help="write every measurement to this JSON file")
    ap.add_argument("--quiet", action="store_true", help="no progress lines")
    return ap


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.size:
        args.sizes = [args.size]
    if args.runs < 1 or args.warmup < 0 or any(s < 64 for s in args.sizes):
        print("error: --runs must be >= 1, --warmup >= 0 and sizes >= 64", file=sys.stderr)
        return 2
    models = [m.resolve() for m in (args.model or [default_model(args.pipeline)])]
    for m in models:
        if not m.is_file():
            print(f"error: {m}: model not found", file=sys.stderr)
            return 2
    if not args.no_torch:
        try:
            import torch  # noqa: F401
        except ImportError:
            print("error: the PyTorch baseline needs torch (pip install -e '.[train]'); or pass --no-baseline",
                  file=sys.stderr)
            return 2
    log = (lambda *a: None) if args.quiet else (lambda m: print(m, file=sys.stderr, flush=True))
    report = {"command": " ".join(["python benchmarks/bench.py", *(argv if argv is not None else sys.argv[1:])]),
              "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "machine": machine(), "threads": args.threads,
              "runs": args.runs, "warmup": args.warmup, "models": [str(m) for m in models],
              "memory_measure": "VmHWM (peak resident size) of each side's worker process (MB)", "sizes": []}
    revs = [r for r in (args.baseline or [DEFAULT_BASELINE]) if r.lower() != "none"]
    report["baselines"] = revs
    try:
        with tempfile.TemporaryDirectory(prefix="superretina_bench_") as tmp:
            try:
                args.baseline_code = {rev: extract(rev, Path(tmp) / f"code_{i}") / "python" for i, rev in enumerate(revs)}
            except subprocess.CalledProcessError as exc:
                raise BenchError(f"--baseline: cannot extract {exc.cmd[4] if len(exc.cmd) > 4 else ''} from git "
                                 f"({exc.stderr.decode(errors='replace').strip()[:200]})") from None
            for size in args.sizes:
                log(f"{size}x{size} pair:")
                res = run_size(size, models, args, Path(tmp), log)
                report["sizes"].append(res)
                print(format_table(res, args.runs, args.warmup), flush=True)
                print(flush=True)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    m = report["machine"]
    print(f"machine: {m.get('cpu')}, {m.get('physical_cores')} cores, ISA {' '.join(m.get('isa', []))}; "
          f"onnxruntime {m.get('onnxruntime')}; {args.threads} threads per side"
          + (f"; GPU {m['gpu']}" if m.get("gpu") else ""))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
