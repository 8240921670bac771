"""Validation during training: FIRE-protocol mAUC on a synthetic set of held-out photographs.

The set is made once with the synthetic-set generator (``fire/synth.py``, eye-model geometry
unless ``validation.geometry`` says ``homography``) from the images that ``split.py`` holds out
of training, and cached; a cached set of another geometry is rebuilt.  Each pair is registered by the application's
own registration code (``Registrar``: NMS, descriptors, matching, homography, matching trick)
with the network being trained behind it, and scored exactly as ``bash run.sh fire`` does.
"""
from __future__ import annotations

import json
from pathlib import Path

from superretina.config import load_config
from superretina.fire.evaluate import run_pair
from superretina.fire.protocol import list_pairs, summarise
from superretina.fire.superretina import make_register_fn
from superretina.fire.protocol import SYNTH_MARKER
from superretina.fire.synth import make_synthetic_set
from superretina.model.torch_stream import TorchStream
from superretina.registrar import Registrar


class Validator:
    key = "val_mauc"

    def __init__(self, held_out: list[Path], cfg: dict):
        set_dir = Path(cfg.get("set_dir", ".cache/valset"))
        geometry = str(cfg.get("geometry", "eye"))
        marker = set_dir / SYNTH_MARKER
        # sets written before the geometry was recorded used the homography geometry
        if not marker.exists() or json.loads(marker.read_text()).get("geometry", "homography") != geometry:
            make_synthetic_set(set_dir, held_out, int(cfg.get("pairs_per_image", 1)), int(cfg.get("size", 1024)),
                               int(cfg.get("seed", 1234)), overwrite=True, progress=False, geometry=geometry)
        self.pairs = list_pairs(set_dir)
        self.bf16 = bool(cfg.get("bf16", False))
        self.reg_cfg = load_config()

    def __call__(self, net) -> dict:
        class _App:  # what make_register_fn needs of an opened application
            registrar = Registrar(TorchStream(net, self.bf16), self.reg_cfg)

        fn = make_register_fn(_App)
        s = summarise([run_pair(spec, fn) for spec in self.pairs])
        out = {self.key: round(s.mauc, 4), "val_failed_pct": round(s.failed_pct, 2),
               "val_acceptable_pct": round(s.acceptable_pct, 2)}
        out.update({f"val_auc_{c}": round(a, 4) for c, a in s.auc.items()})
        return out
