"""Command line of the application (``bash run.sh ...``).

    bash run.sh QUERY REFER [--out DIR] [--config FILE] [--pipeline FILE] [--runtime R]
    bash run.sh                       self-checking demo on the bundled example
    bash run.sh fire DIR [...]        FIRE-protocol batch evaluation (resumable)
    bash run.sh compare DIR [...]     SuperRetina and SIFT on one set, one table
    bash run.sh synth OUT --from ...  synthetic FIRE-format set with known ground truth
    bash run.sh train [...]           train weights (needs the train extra)
    bash run.sh export CKPT OUT.onnx  checkpoint → ONNX (pth2onnx); OUT.pt: TorchScript (GPU via PyTorch)
    bash run.sh COMMAND --help        the options of one command (register, demo, fire, ...)
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from .config import ConfigError

SUBCOMMANDS = ("register", "demo", "fire", "compare", "synth", "train", "export", "bench")
EXIT_OK, EXIT_FAILED_PAIR, EXIT_BAD_INPUT = 0, 1, 2


def _common(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--out", type=Path, default=Path("out"), help="output folder (default ./out)")
    ap.add_argument("--config", type=Path, help="parameters YAML laid over configs/default.yaml")
    ap.add_argument("--pipeline", type=Path, help="pipeline file (default pipeline/superretina.pipeline: the bf16 "
                    "model, OpenVINO on the CPU, f32 where the CPU lacks AMX/AVX-512 BF16; "
                    "pipeline/superretina_fp32.pipeline: the fp32 ONNX model, ONNX Runtime, CUDA when installed; "
                    "pipeline/superretina_ascend.pipeline on Ascend)")
    ap.add_argument("--runtime", choices=("auto", "ascend", "local"),
                    help="MindX runtime: the real SDK (ascend), this project's stand-in "
                         "(local) or auto (SDK if importable; also $SUPERRETINA_RUNTIME)")
    ap.add_argument("--transform", choices=("homography", "quadratic", "auto"),
                    help="transform returned beside the homography (overrides transform.model of the config)")


def _check_out(out: Path) -> None:
    """Refuse an --out that is a file before any work (it used to end a whole run in a traceback)."""
    from .app import AppError

    if out.exists() and not out.is_dir():
        raise AppError(f"{out}: --out must be a folder, and this is a file")


def _print_result(info: dict, written: list[Path]) -> None:
    print(f"status: {info['status']}" + (f" ({info['reason']})" if info["reason"] else ""))
    print(f"keypoints: query {info['num_keypoints']['query']}, refer {info['num_keypoints']['refer']}; "
          f"matches {info['num_matches']}, inliers {info['num_inliers']} ({100 * info['inlier_rate']:.1f}%)")
    from .outputs import quality_line
    if quality_line(info):
        hres = info["residuals"]["homography"]
        print(f"{quality_line(info)} (homography: within 3 px {100 * hres['within_3px']:.0f}%)"
              + (f"; homography kept: {info['transform_choice']['reason']}" if info["transform_choice"]["reason"] else ""))
    print("seconds: " + ", ".join(f"{k} {v:.3f}" for k, v in info["seconds"].items()))
    for p in written:
        print(f"wrote {p}")


def _register_and_write(args, query, refer, query_path, refer_path, annotate=None):
    """Register a pair through the pipeline, write the outputs and print them; returns (result, info).

    ``annotate(result, info)`` may add entries to result.json before it is written.
    """
    from .app import open_app
    from .outputs import result_json, write_outputs

    with open_app(args.config, args.pipeline, args.runtime) as app:
        if args.transform:
            app.config["transform"]["model"] = args.transform
        res = app.registrar.register_images(query, refer)
        info = result_json(res, query_path, refer_path, str(app.model), str(app.pipeline), app.runtime)
        if annotate is not None:
            annotate(res, info)
        written = write_outputs(res, query, refer, args.out, info, app.config)
    _print_result(info, written)
    return res, info


def cmd_register(argv) -> int:
    ap = argparse.ArgumentParser(prog="bash run.sh QUERY REFER", description=(
        "Register QUERY onto REFER (fundus photographs: JPEG, PNG 8/16 bit, TIFF, BMP; any sizes). "
        "Writes OUT/match_result.jpg (matches), OUT/result.jpg (warped query red, reference green: "
        "aligned vessels look yellow), OUT/checkerboard.jpg and OUT/result.json (homography query → "
        "reference in original pixels, keypoints, matches, inliers, timings). Exit code 0 registered, "
        "1 the pair could not be registered, 2 bad input."))
    ap.add_argument("query", type=Path, help="query image (the one warped onto the reference)")
    ap.add_argument("refer", type=Path, help="reference image")
    _common(ap)
    args = ap.parse_args(argv)
    _check_out(args.out)
    from .image_io import read_pair

    query, refer = read_pair(args.query, args.refer)
    res, _ = _register_and_write(args, query, refer, args.query, args.refer)
    return EXIT_OK if res.status == "registered" else EXIT_FAILED_PAIR


def cmd_demo(argv) -> int:
    ap = argparse.ArgumentParser(prog="bash run.sh", description=(
        "Self-checking demo: warps scikit-image's CC0 retina photograph with a known homography and "
        "an illumination change, registers it with the default model and prints the mean "
        "control-point error against the known truth."))
    _common(ap)
    args = ap.parse_args(argv)
    _check_out(args.out)
    from .demo import control_point_error, make_pair, retina_bgr

    refer = retina_bgr()
    query, G, pts = make_pair(refer)
    args.out.mkdir(parents=True, exist_ok=True)
    import cv2
    cv2.imwrite(str(args.out / "demo_query.jpg"), query)
    cv2.imwrite(str(args.out / "demo_refer.jpg"), refer)

    def add_truth(res, info):
        info["demo"] = {"known_homography_refer_to_query": G.tolist(),
                        "mean_control_point_error_px": control_point_error(res.H, G, pts)}

    res, info = _register_and_write(args, query, refer, args.out / "demo_query.jpg", args.out / "demo_refer.jpg",
                                    add_truth)
    err = info["demo"]["mean_control_point_error_px"]
    ok = res.status == "registered" and err < 5.0
    print(f"mean control-point error: {err:.2f} px over {len(pts)} points "
          f"({'PASS' if ok else 'FAIL'}: below 5 px expected)")
    return EXIT_OK if ok else EXIT_FAILED_PAIR


def cmd_fire(argv, compare_all=False) -> int:
    from .fire.evaluate import main
    return main(argv, compare_all=compare_all, prog=f"bash run.sh {'compare' if compare_all else 'fire'}")


def cmd_synth(argv) -> int:
    from .fire.synth import main
    return main(argv)


def _torch_command(module: str, what: str, argv) -> int:
    """Run a PyTorch-side command, or say how to install the train extra."""
    import importlib
    try:
        main = importlib.import_module(module).main
    except ImportError as exc:
        print(f"error: {what} needs the train extra (PyTorch, onnx): pip install -e '.[train]' ({exc})", file=sys.stderr)
        return EXIT_BAD_INPUT
    return main(argv)


def cmd_train(argv) -> int:
    return _torch_command("superretina.training.train", "training", argv)


def cmd_export(argv) -> int:
    return _torch_command("superretina.model.export", "export", argv)


def cmd_bench(argv) -> int:
    from .bench import main
    return main(argv)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if argv[:1] in (["-h"], ["--help"]):
        print(__doc__)
        return EXIT_OK
    if not argv or argv[0].startswith("-"):
        cmd, rest = "demo", argv
    elif argv[0] in SUBCOMMANDS:
        cmd, rest = argv[0], argv[1:]
    else:
        cmd, rest = "register", argv
    handlers = {"register": cmd_register, "demo": cmd_demo, "fire": cmd_fire,
                "compare": lambda a: cmd_fire(a, compare_all=True), "synth": cmd_synth,
                "train": cmd_train, "export": cmd_export, "bench": cmd_bench}
    from .app import AppError
    from .image_io import ImageReadError
    from .sdk import RuntimeUnavailable
    from .stream_client import PipelineError
    try:
        return handlers[cmd](rest)
    except (AppError, ConfigError, ImageReadError, PipelineError, RuntimeUnavailable) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as exc:  # e.g. an output folder that cannot be written
        print(f"error: {exc.filename or ''}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
