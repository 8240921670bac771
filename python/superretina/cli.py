"""Command line of the application: ``superretina ...`` once installed (``bash run.sh ...`` in a checkout).

    {prog} QUERY REFER [--out DIR] [--config FILE] [--model NAME | --pipeline FILE] [--device D] [--runtime R]
                                      register a pair (default --out: QUERY_to_REFER)
    {prog} demo                  self-checking demo on the bundled example
    {prog} fire DIR [...]        FIRE-protocol batch evaluation (resumable)
    {prog} compare DIR [...]     SuperRetina (homography, quadratic, auto) and SIFT on one set, one table
    {prog} synth OUT --from ...  synthetic FIRE-format set with known ground truth
    {prog} batch PAIRS.csv --out DIR
                                      register a list of pairs (resumable; --engine ray)
    {prog} series IMAGES... --out DIR  several images of one eye in one frame (visits, fields)
    {prog} report DIR            rebuild DIR/index.html, the browsable report of a run
    {prog} export-transform RESULT --format skimage|opencv-maps|displacement
                                      a result's transform for scikit-image, cv2.remap, ITK/SimpleITK
    {prog} train [...]           train weights (needs the train extra)
    {prog} export CKPT OUT.onnx  checkpoint → ONNX (pth2onnx); OUT.pt: TorchScript (GPU via PyTorch)
    {prog} bench [...]           speed benchmark (source checkout only)
    {prog} COMMAND --help        the options of one command (register, demo, fire, ...)

Options for every command: --version, -v (info; -vv debug) / -q (errors only), --log-file FILE
(the log, info and above, appended to FILE). Images: JPEG, PNG 8/16 bit, TIFF, BMP, DICOM.
Models: --model {models} (shipped; --pipeline FILE for another), --device auto|cpu|gpu.
Paths are relative to the current folder. Exit codes: 0 registered (or done), 1 the pair could
not be registered, 2 bad input (one line on stderr names the file or setting), 130 interrupted.
Python: ``import superretina; superretina.register(query, refer)`` (see superretina.api).
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from pathlib import Path

from .config import ConfigError
from .models import DEVICES, add_model_option
from .progname import prog_name
from .sdk import CHOICES

SUBCOMMANDS = ("register", "demo", "fire", "compare", "synth", "batch", "series", "report", "export-transform",
               "train", "export", "bench")
EXIT_OK, EXIT_FAILED_PAIR, EXIT_BAD_INPUT = 0, 1, 2


def usage() -> str:
    """The top-level help, with this invocation's command name and the shipped model names."""
    from .models import shipped_models

    from . import __version__

    text = __doc__.split("\n\n", 1)[1]     # the first line is for developers reading the source
    return (f"SuperRetina fundus image registration {__version__}\n\n"
            + text.replace("{prog}", prog_name()).replace("{models}", "|".join(shipped_models()) or "NAME"))


def _common(ap: argparse.ArgumentParser, default_out: str) -> None:
    ap.add_argument("--out", type=Path, help=f"output folder (default {default_out}, in the current folder)")
    ap.add_argument("--config", type=Path, help="parameters YAML laid over configs/default.yaml")
    add_model_option(ap)   # the names of the shipped pipelines and the default, read from the pipeline files
    ap.add_argument("--pipeline", type=Path, help="a pipeline file instead of --model (default: the shipped "
                    "pipeline/superretina.pipeline)")
    ap.add_argument("--device", choices=DEVICES, help="where the local runtime runs the model: gpu (ONNX Runtime "
                    "CUDA, OpenVINO GPU, PyTorch CUDA; one line if there is none), cpu, or auto (default: CUDA "
                    "where ONNX Runtime or PyTorch has it, OpenVINO on the CPU; also $MXLOCAL_DEVICE)")
    ap.add_argument("--runtime", choices=CHOICES,
                    help="MindX runtime: the real SDK (ascend), this project's stand-in "
                         "(local) or auto (SDK if installed in $MX_SDK_HOME; also $SUPERRETINA_RUNTIME)")
    ap.add_argument("--transform", choices=("homography", "quadratic", "auto"),
                    help="transform returned beside the homography (overrides transform.model of the config; "
                         "default quadratic, kept only where it explains held-out matches better)")


def _effective_config(args) -> dict:
    """--config laid over the defaults and the chosen pipeline's own settings, with --transform on
    top; checked before any work."""
    from .config import DEFAULT_PIPELINE, load_config, pipeline_settings
    from .models import ModelChoiceError, choose_pipeline

    try:
        pipeline = choose_pipeline(args.model, args.pipeline) or DEFAULT_PIPELINE
    except ModelChoiceError:
        pipeline = None   # opening the session says what is wrong with the choice
    cfg = load_config(args.config, pipeline_settings(pipeline))
    if args.transform:
        cfg["transform"]["model"] = args.transform
    return cfg


def _session(args, cfg):
    """The Session of a register/demo command line: --model or --pipeline, --runtime, --device."""
    from .api import Session

    return Session(cfg, args.pipeline, args.runtime, model=args.model, device=args.device)


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
    ap = argparse.ArgumentParser(prog=prog_name("QUERY REFER"), description=(
        "Register QUERY onto REFER (fundus photographs: JPEG, PNG 8/16 bit, TIFF, BMP, DICOM; any sizes). "
        "Writes OUT/match_result.jpg (matches), OUT/result.jpg (warped query red, reference green: "
        "aligned vessels look yellow), OUT/checkerboard.jpg and OUT/result.json (homography query → "
        "reference in original pixels, keypoints, matches, inliers, timings). Exit code 0 registered, "
        "1 the pair could not be registered, 2 bad input."))
    ap.add_argument("query", type=Path, help="query image (the one warped onto the reference)")
    ap.add_argument("refer", type=Path, help="reference image")
    _common(ap, "QUERY_to_REFER (file stems)")
    args = ap.parse_args(argv)
    out = args.out or pair_folder(args.query, args.refer)
    from .image_io import decoder_messages_silenced, read_pair
    from .outputs import out_folder

    cfg = _effective_config(args)  # settings first: a bad value is reported before any work
    with out_folder(out), _session(args, cfg) as session:  # refused: no empty --out left
        with decoder_messages_silenced():  # a corrupt file gets our one error line, not libjpeg's as well
            query, refer = read_pair(args.query, args.refer, cfg["input"]["max_pixels"])
        reg = session.register(query, refer, paths=(args.query, args.refer))
        written = reg.save(out)
    _print_result(reg, written)
    return EXIT_OK if reg.registered else EXIT_FAILED_PAIR


def cmd_demo(argv) -> int:
    ap = argparse.ArgumentParser(prog=prog_name("demo"), description=(
        "Self-checking demo: warps scikit-image's CC0 retina photograph with a known homography and "
        "an illumination change, registers it with the default model and prints the mean "
        "control-point error against the known truth."))
    _common(ap, "superretina_demo")
    args = ap.parse_args(argv)
    out = args.out or Path("superretina_demo")
    from .demo import control_point_error, make_pair, retina_bgr
    from .outputs import prepare_out, save_jpeg

    cfg = _effective_config(args)
    prepare_out(out)
    refer = retina_bgr()
    query, G, pts = make_pair(refer)
    save_jpeg(out / "demo_query.jpg", query)
    save_jpeg(out / "demo_refer.jpg", refer)
    with _session(args, cfg) as session:
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
    return main(argv, compare_all=compare_all, prog=prog_name("compare" if compare_all else "fire"))


def cmd_synth(argv) -> int:
    from .fire.synth import main
    return main(argv)


def cmd_batch(argv) -> int:
    from .batch.cli import main
    return main(argv)


def cmd_series(argv) -> int:
    from .series.cli import main
    return main(argv)


def cmd_report(argv) -> int:
    from .batch.cli import report_main
    return report_main(argv)


def cmd_export_transform(argv) -> int:
    from .export_transform import main
    return main(argv, prog=prog_name("export-transform"))


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


def split_global_options(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """Take the options every command has (-v/-q, --log-file, --version) out of ``argv``, wherever they are
    (up to a ``--``); returns them and the rest. A usage error exits 2 as argparse does."""
    ap = argparse.ArgumentParser(prog=prog_name(), add_help=False)
    ap.add_argument("-v", "--verbose", action="count", default=0)
    ap.add_argument("-q", "--quiet", action="store_true")
    ap.add_argument("--log-file", type=Path)
    ap.add_argument("--version", action="store_true")
    cut = argv.index("--") if "--" in argv else len(argv)
    mine, rest, i = [], [], 0
    while i < cut:
        a = argv[i]
        if a in ("-q", "--quiet", "--version") or (a.startswith("-v") and set(a[1:]) == {"v"}) or a == "--verbose":
            mine.append(a)
        elif a == "--log-file" and i + 1 < cut:
            mine += argv[i:i + 2]
            i += 1
        elif a.startswith("--log-file="):
            mine.append(a)
        else:
            rest.append(a)
        i += 1
    opts = ap.parse_args(mine)
    if opts.verbose and opts.quiet:
        ap.error("-v and -q: give one of them")
    return opts, rest + argv[cut:]


def configure_logging(opts: argparse.Namespace) -> None:
    """Warnings on stderr (-v info, -vv debug, -q errors only); with --log-file, info and above
    (debug with -vv) appended to that file as well, with the time."""
    level = logging.ERROR if opts.quiet else {0: logging.WARNING, 1: logging.INFO}.get(opts.verbose, logging.DEBUG)
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(level)
    console.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handlers = [console]
    if opts.log_file is not None:
        from .outputs import OutputError
        try:
            log_file = logging.FileHandler(opts.log_file, mode="a", encoding="utf-8")
        except OSError as exc:
            raise OutputError(f"{opts.log_file}: --log-file cannot be opened for writing ({exc.strerror or exc})") from None
        log_file.setLevel(min(level, logging.DEBUG if opts.verbose > 1 else logging.INFO))
        log_file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handlers.append(log_file)
    logging.basicConfig(level=min(h.level for h in handlers), handlers=handlers, force=True)


HANDLERS = {"register": cmd_register, "demo": cmd_demo, "fire": cmd_fire,
            "compare": lambda a: cmd_fire(a, compare_all=True), "synth": cmd_synth,
            "batch": cmd_batch, "series": cmd_series, "report": cmd_report, "export-transform": cmd_export_transform,
            "train": cmd_train, "export": cmd_export, "bench": cmd_bench}


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        opts, argv = split_global_options(argv)
    except SystemExit as exc:   # argparse's usage error (exit 2)
        return int(exc.code or 0)
    if opts.version:
        from . import __version__
        print(f"superretina {__version__}")
        return EXIT_OK
    if not argv or argv[:1] in (["-h"], ["--help"]):
        print(usage())    # bare `superretina` prints help; the demo is `superretina demo`
        return EXIT_OK
    if argv[0].startswith("-"):
        cmd, rest = "demo", argv     # `bash run.sh --out DIR`: the demo's options
    elif argv[0] in SUBCOMMANDS:
        cmd, rest = argv[0], argv[1:]
    else:
        cmd, rest = "register", argv
    from .api import ResultFileError
    from .app import AppError
    from .batch.pairs import BatchInputError
    from .batch.store import StoreError
    from .export_transform import ExportError
    from .image_io import ImageReadError
    from .models import ModelChoiceError
    from .outputs import OutputError
    from .report.build import ReportError
    from .sdk import RuntimeUnavailable
    from .series.inputs import SeriesInputError
    from .stream_client import PipelineError
    try:
        configure_logging(opts)
        with contextlib.ExitStack() as stack:
            if opts.quiet:   # -q: errors only, no report on stdout
                stack.enter_context(contextlib.redirect_stdout(stack.enter_context(open(os.devnull, "w"))))
            return HANDLERS[cmd](rest)
    except (AppError, ConfigError, ImageReadError, OutputError, PipelineError, RuntimeUnavailable, BatchInputError,
            StoreError, ReportError, ExportError, ResultFileError, ModelChoiceError, SeriesInputError) as exc:
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
