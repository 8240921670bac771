"""Train SuperRetina weights: ``python -m superretina.training.train --config configs/train.yaml``.

Detector: Dice between the predicted map and Gaussian heatmaps of vessel-junction labels, in
both views of a pair.  Descriptor: InfoNCE between the two views' descriptors of the same
physical points (a hardest-negative triplet loss trained from scratch did not learn here).
Checkpoints are ``{'net': state_dict, ...}`` with the reference's key names; ``--resume``
continues a run (optimizer, step, RNG).  Validation runs every epoch on held-out images.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from superretina.model.network import SuperRetinaNet, Widths, checkpoint_dict, infer_widths, read_checkpoint

from .dataset import PairSampler, load_photo
from .losses import dice_loss, info_nce, sample_descriptors
from ..data_split import split
from .validate import Validator
from ..progname import prog_name


def load_config(path: Path, overrides: list[str]) -> dict:
    cfg = yaml.safe_load(Path(path).read_text())
    for item in overrides:  # key=value, value parsed as YAML
        key, _, value = item.partition("=")
        node = cfg
        *parents, leaf = key.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = yaml.safe_load(value)
    return cfg


def batch_loss(net, samples, cfg) -> tuple[torch.Tensor, dict]:
    imgs = np.stack([s.image_a for s in samples] + [s.image_b for s in samples])[:, None]
    heats = np.stack([s.heat_a for s in samples] + [s.heat_b for s in samples])[:, None]
    # bf16 autocast on CPUs with AMX/AVX512-BF16 roughly halves the step time; losses stay fp32.
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bool(cfg.get("bf16", False))):
        det, desc = net(torch.from_numpy(imgs))
    det, desc = det.float(), desc.float()
    n = len(samples)
    valid = torch.from_numpy(np.stack([np.ones_like(s.valid_b) for s in samples] + [s.valid_b for s in samples])[:, None])
    l_det = dice_loss(det * (valid > 0.5), torch.from_numpy(heats))
    l_desc = []
    for i, s in enumerate(samples):
        if len(s.points_a) < 8:
            continue
        pa, pb = torch.from_numpy(s.points_a), torch.from_numpy(s.points_b)
        da, db = sample_descriptors(desc[i], pa), sample_descriptors(desc[n + i], pb)
        l_desc.append(info_nce(da, db, pa, cfg["temperature"], cfg["exclusion_px"]))
    l_desc = torch.stack(l_desc).mean() if l_desc else torch.zeros(())
    loss = l_det + cfg["desc_weight"] * l_desc
    return loss, {"loss": loss.item(), "det": l_det.item(), "desc": l_desc.item()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog=prog_name("train"), description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", type=Path, default=Path("configs/train.yaml"), help="training YAML")
    ap.add_argument("--data", type=Path, help="folder of fundus photographs (+ <name>_vessels.png masks)")
    ap.add_argument("--out", type=Path, help="run folder for checkpoints and logs")
    ap.add_argument("--resume", type=Path, help="checkpoint to continue from (last.pth of a run)")
    ap.add_argument("--init", type=Path, help="start from these weights (new optimizer and step)")
    ap.add_argument("--steps", type=int, help="stop after this many optimizer steps in total")
    ap.add_argument("--minutes", type=float, help="stop after this many minutes of this session")
    ap.add_argument("--threads", type=int, help="torch CPU threads")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value")
    args = ap.parse_args(argv)

    cfg = load_config(args.config, args.set)
    data = args.data or Path(cfg["data"])
    out = args.out or Path(cfg["out"])
    out.mkdir(parents=True, exist_ok=True)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(cfg["seed"])

    train_paths, held_paths = split(data)
    if cfg.get("max_images"):
        train_paths = train_paths[: cfg["max_images"]]
    if not train_paths:
        raise SystemExit(f"error: no training images in {data}")
    cache = Path(cfg.get("label_cache", ".cache/labels"))
    photos = [load_photo(p, cfg["frame"], cache) for p in train_paths]
    print(f"training on {len(photos)} photographs, {sum(len(p.keypoints) for p in photos)} junction labels; "
          f"{len(held_paths)} held out", flush=True)

    widths = Widths.named(cfg["network"])
    net = SuperRetinaNet(widths)
    opt = torch.optim.Adam(net.parameters(), lr=cfg["lr"])
    step, epoch, history = 0, 0, []
    start_from = args.resume or args.init
    if start_from:
        ck = read_checkpoint(start_from)  # weights only: a checkpoint file cannot run code
        net = SuperRetinaNet(infer_widths(ck["net"]))
        net.load_state_dict(ck["net"], strict=True)
        opt = torch.optim.Adam(net.parameters(), lr=cfg["lr"])
        if args.resume:
            opt.load_state_dict(ck["optimizer"])
            step, epoch, history = ck["step"], ck["epoch"], ck.get("history", [])
        print(f"{'resumed' if args.resume else 'initialised'} from {start_from} at step {step}", flush=True)
    for g in opt.param_groups:
        g["lr"] = cfg["lr"]

    sampler = PairSampler(photos, cfg["augment"], seed=cfg["seed"] + step)
    validator = Validator(held_paths, cfg["validation"]) if held_paths and cfg["validation"]["enabled"] else None
    total_steps = cfg["steps"] if args.steps is None else args.steps
    deadline = time.time() + 60 * args.minutes if args.minutes else None
    steps_per_epoch = max(1, len(photos) // cfg["batch"])
    log = (out / "log.jsonl").open("a")
    t0, run = time.time(), []
    while step < total_steps and (deadline is None or time.time() < deadline):
        net.train()
        idx = sampler.rng.choice(len(photos), size=cfg["batch"], replace=False)
        loss, parts = batch_loss(net, [sampler.sample(int(i)) for i in idx], cfg["loss"])
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        run.append(parts)
        if step % cfg["log_every"] == 0:
            mean = {k: float(np.mean([r[k] for r in run])) for k in run[0]}
            rate = (time.time() - t0) / len(run)
            print(f"step {step}/{total_steps} epoch {epoch} loss {mean['loss']:.4f} "
                  f"(det {mean['det']:.4f} desc {mean['desc']:.4f}) {rate:.2f} s/step", flush=True)
            log.write(json.dumps({"step": step, **mean, "s_per_step": rate}) + "\n")
            log.flush()
            run, t0 = [], time.time()
        if step % steps_per_epoch == 0:
            epoch += 1
            record = {"step": step, "epoch": epoch}
            if validator and epoch % cfg["validation"]["every_epochs"] == 0:
                record.update(validator(net))
                print("validation " + json.dumps(record), flush=True)
                best = max((h.get(validator.key, -1) for h in history), default=-1)
                if record[validator.key] > best:
                    torch.save(checkpoint_dict(net, step=step, epoch=epoch, validation=record), out / "best.pth")
            history.append(record)
            log.write(json.dumps({"validation": record}) + "\n")
            log.flush()
        if step % cfg["checkpoint_every"] == 0 or step == total_steps:
            save_last(out, net, opt, step, epoch, history, cfg)
    save_last(out, net, opt, step, epoch, history, cfg)
    print(f"stopped at step {step}; checkpoint {out / 'last.pth'}", flush=True)
    return 0


def save_last(out, net, opt, step, epoch, history, cfg):
    tmp = out / "last.pth.tmp"
    torch.save(checkpoint_dict(net, optimizer=opt.state_dict(), step=step, epoch=epoch,
                               history=history, config=cfg), tmp)
    tmp.replace(out / "last.pth")


if __name__ == "__main__":
    raise SystemExit(main())
