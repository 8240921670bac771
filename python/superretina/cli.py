"""Command line of the application (``bash run.sh ...``, or ``superretina ...`` once installed).

    bash run.sh QUERY REFER [--out DIR] [--config FILE] [--pipeline FILE] [--runtime R]
                                      register a pair (default --out: QUERY_to_REFER)
    bash run.sh                       self-checking demo on the bundled example
    bash run.sh fire DIR [...]        FIRE-protocol batch evaluation (resumable)
    bash run.sh compare DIR [...]     SuperRetina (homography, quadratic, auto) and SIFT on one set, one table
    bash run.sh synth OUT --from ...  synthetic FIRE-format set with known ground truth
    bash run.sh batch PAIRS.csv --out DIR   register a list of pairs (resumable; --engine ray)
    bash run.sh report DIR            rebuild DIR/index.html, the browsable report of a run
    bash run.sh train [...]           train weights (needs the train extra)
    bash run.sh export CKPT OUT.onnx  checkpoint → ONNX (pth2onnx); OUT.pt: TorchScript (GPU via PyTorch)
    bash run.sh bench [...]           speed benchmark (source checkout only)
    bash run.sh COMMAND --help        the options of one command (register, demo, fire, ...)

Paths are relative to the current folder. Exit codes: 0 registered (or done), 1 the pair could
not be registered, 2 bad input (one line on stderr names the file or setting), 130 interrupted.
Python: ``import superretina; superretina.register(query, refer)`` (see superretina.api).
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from .config import ConfigError
from .sdk import CHOICES

SUBCOMMANDS = ("register", "demo", "fire", "compare", "synth", "batch", "report", "train", "export", "bench")
EXIT_OK, EXIT_FAILED_PAIR, EXIT_BAD_INPUT = 0, 1, 2


def _common(ap: argparse.ArgumentParser, default_out: str) -> None:
    ap.add_argument("--out", type=Path, help=f"output folder (default {default_out}, in the current folder)")
    ap.add_argument("--config", type=Path, help="parameters YAML laid over configs/default.yaml")
    ap.add_argument("--pipeline", type=Path, help="pipeline file (default pipeline/superretina.pipeline: the bf16 "
                    "model, OpenVINO on the CPU, f32 where the CPU lacks AMX/AVX-512 BF16; "
                    "pipeline/superretina_fp32.pipeline: the fp32 ONNX model, ONNX Runtime, CUDA when installed; "
                    "pipeline/superretina_ascend.pipeline on Ascend)")
    ap.add_argument("--runtime", choices=CHOICES,
                    help="MindX runtime: the real SDK (ascend), this project's stand-in "
                         "(local) or auto (SDK if installed in $MX_SDK_HOME; also $SUPERRETINA_RUNTIME)")
    ap.add_argument("--transform", choices=("homography", "quadratic", "auto"),
                    help="transform returned beside the homography (overrides transform.model of the config; "
                         "default quadratic, kept only where it explains held-out matches better)")


def _effective_config(args) -> dict:
    """--config laid over the defaults, with --transform on top; checked before any work."""
    from .config import load_config

    cfg = load_config(args.config)
    if args.transform:
        cfg["transform"]["model"] = args.transform
    return cfg


def pair_folder(query: Path, refer: Path) -> Path:
    """Default output folder of a pair: ``<query stem>_to_<refer stem>`` in the current folder."""
    return Path(f"{query.stem}_to_{refer.stem}")


def _print_result(reg, written: list[Path]) -> None:
    from .outputs import quality_line

    q, info = reg.quality, reg.to_json()
    print(f"status: {reg.status}" + (f" ({reg.reason})" if reg.reason else ""))
    print(f"confidence: {reg.confidence:.2f} (calibrated probability that the transform is right; docs/confidence.md)")
    print(f"keypoints: query {q['num_keypoints_query']}, refer {q['num_keypoints_refer']}; "
          f"matches {q['num_matches']}, inliers {q['num_inliers']} ({100 * q['inlier_rate']:.1f}%)")
    if quality_line(info):
        hres = info["residuals"]["homography"]
        print(f"{quality_line(info)} (homography: within 3 px {100 * hres['within_3px']:.0f}%)"
              + (f"; homography kept: {info['transform_choice']['reason']}" if info["transform_choice"]["reason"] else ""))
    print("seconds: " + ", ".join(f"{k} {v:.3f}" for k, v in reg.seconds.items()))
    for p in written:
        print(f"wrote {p}")


def cmd_register(argv) -> int:
    ap = argparse.ArgumentParser(prog="bash run.sh QUERY REFER", description=(
        "Register QUERY onto REFER (fundus photographs: JPEG, PNG 8/16 bit, TIFF, BMP; any sizes). "
        "Writes OUT/match_result.jpg (matches), OUT/result.jpg (warped query red, reference green: "
        "aligned vessels look yellow), OUT/checkerboard.jpg and OUT/result.json (homography query → "
        "reference in original pixels, keypoints, matches, inliers, timings). Exit code 0 registered, "
        "1 the pair could not be registered, 2 bad input."))
    ap.add_argument("query", type=Path, help="query image (the one warped onto the reference)")
    ap.add_argument("refer", type=Path, help="reference image")
    _common(ap, "QUERY_to_REFER (file stems)")
    args = ap.parse_args(argv)
    out = args.out or pair_folder(args.query, args.refer)
    from .api import Session
    from .image_io import decoder_messages_silenced, read_pair
    from .outputs import prepare_out

    cfg = _effective_config(args)  # settings first: a bad value is reported before any work
    prepare_out(out)
    with Session(cfg, args.pipeline, args.runtime) as session:
        with decoder_messages_silenced():  # a corrupt file gets our one error line, not libjpeg's as well
            query, refer = read_pair(args.query, args.refer, cfg["input"]["max_pixels"])
        reg = session.register(query, refer, paths=(args.query, args.refer))
        written = reg.save(out)
    _print_result(reg, written)
    return EXIT_OK if reg.registered else EXIT_FAILED_PAIR


def cmd_demo(argv) -> int:
    ap = argparse.ArgumentParser(prog="bash run.sh", description=(
        "Self-checking demo: warps scikit-image's CC0 retina photograph with a known homography and "
        "an illumination change, registers it with the default model and prints the mean "
        "control-point error against the known truth."))
    _common(ap, "superretina_demo")
    args = ap.parse_args(argv)
    out = args.out or Path("superretina_demo")
    from .api import Session
    from .demo import control_point_error, make_pair, retina_bgr
    from .outputs import prepare_out, save_jpeg

    cfg = _effective_config(args)
    prepare_out(out)
    refer = retina_bgr()
    query, G, pts = make_pair(refer)
    save_jpeg(out / "demo_query.jpg", query)
    save_jpeg(out / "demo_refer.jpg", refer)
    with Session(cfg, args.pipeline, args.runtime) as session:
        reg = session.register(query, refer, paths=(out / "demo_query.jpg", out / "demo_refer.jpg"))
        err = control_point_error(reg.homography, G, pts)
        reg.annotate("demo", {"known_homography_refer_to_query": G.tolist(), "mean_control_point_error_px": err})
        written = reg.save(out)
    _print_result(reg, written)
    ok = reg.registered and err < 5.0
    print(f"mean control-point error: {err:.2f} px over {len(pts)} points "
          f"({'PASS' if ok else 'FAIL'}: below 5 px expected)")
    return EXIT_OK if ok else EXIT_FAILED_PAIR


def cmd_fire(argv, compare_all=False) -> int:
    from .fire.evaluate import main
    return main(argv, compare_all=compare_all, prog=f"bash run.sh {'compare' if compare_all else 'fire'}")


def cmd_synth(argv) -> int:
    from .fire.synth import main
    return main(argv)


def cmd_batch(argv) -> int:
    from .batch.cli import main
    return main(argv)


def cmd_report(argv) -> int:
    from .batch.cli import report_main
    return report_main(argv)


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
    """The speed benchmark belongs to the source checkout (benchmarks/), not to the installed package."""
    import subprocess

    from .app import AppError

    bench = Path(__file__).resolve().parents[2] / "benchmarks" / "bench.py"
    if not bench.is_file():
        raise AppError("the speed benchmark is part of the source checkout (benchmarks/bench.py), not of the "
                       "installed package: run `bash run.sh bench` in a clone of the project")
    return subprocess.call([sys.executable, str(bench), *argv])


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
                "batch": cmd_batch, "report": cmd_report,
                "train": cmd_train, "export": cmd_export, "bench": cmd_bench}
    from .app import AppError
    from .batch.pairs import BatchInputError
    from .batch.store import StoreError
    from .image_io import ImageReadError
    from .outputs import OutputError
    from .report.build import ReportError
    from .sdk import RuntimeUnavailable
    from .stream_client import PipelineError
    try:
        return handlers[cmd](rest)
    except (AppError, ConfigError, ImageReadError, OutputError, PipelineError, RuntimeUnavailable, BatchInputError,
            StoreError, ReportError) as exc:
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
