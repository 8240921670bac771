"""Which output of a model variant costs accuracy: ``fire`` with the detector map of one OpenVINO
IR and the descriptors of another (docs/int8-model.md).

    PYTHONPATH=python .venv/bin/python benchmarks/hybrid_outputs.py DETECTOR.xml DESCRIPTOR.xml SET OUT

Both IRs run on every image (a diagnosis, not a model to use); the rows are ``fire``'s, in OUT.
The hybrid is an engine registered here for the suffix ``.hybrid`` (a two-line file naming the
two IRs), run through a copy of the default pipeline, so the registration is the application's.
"""
from __future__ import annotations

import sys
from pathlib import Path

import mxlocal.model_runtime as runtime
from superretina.cli import main as cli
from superretina.resources import DEFAULT_PIPELINE
from superretina.stream_client import read_layout


class HybridModel(runtime.OpenVinoModel):
    """``detector`` from the first IR of the file, ``descriptor`` from the second."""

    def __init__(self, path: Path):
        det, desc = Path(path).read_text().split("\n")[:2]
        super().__init__(Path(det))
        self.descriptor_model = runtime.OpenVinoModel(Path(desc))

    def run(self, feeds: list) -> list:
        first, second = super().run(feeds), self.descriptor_model.run(feeds)
        return [second[i] if t.name == "descriptor" else first[i] for i, t in enumerate(self.outputs)]


def main(argv=None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 4:
        raise SystemExit(__doc__)
    det, desc, fire_set, out = args
    for p in (det, desc):
        if not Path(p).is_file():
            raise SystemExit(f"error: {p}: no such model")
    runtime.ENGINES[".hybrid"] = HybridModel
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    hybrid = out_dir / "model.hybrid"
    hybrid.write_text(f"{Path(det).resolve()}\n{Path(desc).resolve()}\n")
    default_model = str(read_layout(DEFAULT_PIPELINE).model_path)
    text = DEFAULT_PIPELINE.read_text()
    pipeline = out_dir / "hybrid.pipeline"
    pipeline.write_text(text.replace(Path(default_model).name, str(hybrid.resolve())).replace("../model/", ""))
    return cli(["fire", fire_set, "--pipeline", str(pipeline), "--out", str(out_dir / "fire"), "--no-progress"])


if __name__ == "__main__":
    sys.exit(main())
