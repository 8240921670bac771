"""``bash run.sh series IMAGES... --out DIR``: several images of one eye in one frame.

IMAGES: image files, one folder of images, or one CSV with an ``image`` column and optional
``visit``, ``date``, ``field`` columns. Writes DIR/series.json, DIR/aligned/, DIR/montage.png and
DIR/flicker.html and prints a summary. Exit 0 when every image is in the frame, 1 when some
image is unconnected (it joins no component: reported, not forced in), 2 bad input.
"""
from __future__ import annotations

import argparse
from pathlib import Path


def main(argv) -> int:
    from ..cli import _common
    from ..progname import prog_name

    ap = argparse.ArgumentParser(prog=prog_name("series"), description=__doc__.split("\n\n")[1])
    ap.add_argument("images", nargs="+", type=Path, help="image files, a folder, or a series CSV")
    ap.add_argument("--reference", help="the frame's image (name, file or index; default the image that "
                                        "best connects the others)")
    ap.add_argument("--jobs", type=int, default=2,
                    help="pairs in flight at once, 1-16 (default 2; the series is the same for any value)")
    _common(ap, "series_<first image's stem>")   # --out, --config, --model/--pipeline, --device, --runtime, --transform
    args = ap.parse_args(argv)
    from ..batch.engines import MAX_JOBS
    if not 1 <= args.jobs <= MAX_JOBS["local"]:   # pairs in flight on this machine, as batch's
        ap.exit(2, f"{ap.prog}: error: --jobs must be 1 to {MAX_JOBS['local']}, got {args.jobs}\n")
    from ..cli import _effective_config, _session
    from ..image_io import decoder_messages_silenced
    from ..outputs import out_folder
    from .core import register_series
    from .inputs import collect_images

    cfg = _effective_config(args)                 # settings first: a bad value is reported before any work
    descs, _ = collect_images(args.images)        # a bad folder / CSV too
    out = args.out or Path(f"series_{descs[0].name}")
    ref = args.reference
    if ref is not None and ref.isdigit():
        ref = int(ref)
    # a refused run leaves no empty --out behind (outputs.out_folder)
    with out_folder(out), _session(args, cfg) as session, decoder_messages_silenced():
        s = register_series(args.images, ref, session=session, progress=print, jobs=args.jobs)   # -q (every command) silences it
        written = s.save(out)
    print(s.summary())
    for p in written:
        if p.parent == out or p.name == "aligned.tif":
            print(f"wrote {p}")
    return 0 if not s.unconnected else 1
