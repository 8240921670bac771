"""The SuperRetina network (Liu et al., ECCV 2022) in PyTorch.

Parameter names and shapes follow the reference so that an official checkpoint
(``{'net': state_dict}``) loads with strict key matching, and checkpoints written here load in
the reference code.  ``widths`` makes a narrower variant with the same inputs, outputs and
parameter names (only the channel counts differ); the official widths are the default.

Input: (N, 1, H, W) float32 in [0, 1], H and W multiples of 8 (768x768 in the reference).
Outputs: detector (N, 1, H, W) sigmoid probabilities; descriptor (N, 256, 2*(H/16-1), 2*(W/16-1))
(94x94 for 768), computed from L2-normalised features through a 2x2 transposed convolution.

Three detector heads (``ARCHITECTURES``), told apart by their parameter names so that a
checkpoint says which it is: ``unet`` (the published decoder, ending in a full-resolution
block), ``fast`` (:class:`SuperRetinaFastNet`: the same encoder, descriptor head and first
two decoder blocks, then a head that ends at 1/2 resolution and reaches full resolution by
depth-to-space, as SuperPoint's detector does) and ``lowrank``
(:class:`SuperRetinaLowRankNet`: the published decoder with its full-resolution block
factorised to low rank).
"""
from __future__ import annotations

import pickle
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

DESCRIPTOR_DIM = 256


def upsample(t: torch.Tensor) -> torch.Tensor:
    """The decoder's 2x bilinear upsampling, with aligned corners as in the reference (so it is
    not shift-invariant: a crop's output is not the frame's window)."""
    return F.interpolate(t, scale_factor=2, mode="bilinear", align_corners=True)


@dataclass(frozen=True)
class Widths:
    """Channel counts. c1..c4: encoder blocks; cd: descriptor head's hidden width."""

    c1: int = 64
    c2: int = 64
    c3: int = 128
    c4: int = 128
    cd: int = 256

    @classmethod
    def named(cls, name: str) -> "Widths":
        if name not in VARIANTS:
            raise ValueError(f"unknown network variant {name!r}; expected one of {sorted(VARIANTS)}")
        return VARIANTS[name]


VARIANTS = {
    "full": Widths(),                         # the published network, ~3.0 M parameters
    "half": Widths(32, 32, 64, 64, 128),      # ~4x fewer multiply-adds
}


def _double_conv(cin: int, cout: int) -> nn.Sequential:
    # Indices 0 and 2 carry the weights: keys "<name>.0.weight", "<name>.2.weight" as in the reference.
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1), nn.ReLU(inplace=True),
    )


class SuperRetinaNet(nn.Module):
    def __init__(self, widths: Widths | str = "full"):
        super().__init__()
        w = Widths.named(widths) if isinstance(widths, str) else widths
        self.widths = w
        self.relu = nn.ReLU(inplace=True)
        self.pool = nn.MaxPool2d(2, 2)
        self.conv1a = nn.Conv2d(1, w.c1, 3, padding=1)
        self.conv1b = nn.Conv2d(w.c1, w.c1, 3, padding=1)
        self.conv2a = nn.Conv2d(w.c1, w.c2, 3, padding=1)
        self.conv2b = nn.Conv2d(w.c2, w.c2, 3, padding=1)
        self.conv3a = nn.Conv2d(w.c2, w.c3, 3, padding=1)
        self.conv3b = nn.Conv2d(w.c3, w.c3, 3, padding=1)
        self.conv4a = nn.Conv2d(w.c3, w.c4, 3, padding=1)
        self.conv4b = nn.Conv2d(w.c4, w.c4, 3, padding=1)
        # Descriptor head.
        self.convDa = nn.Conv2d(w.c4, w.cd, 3, padding=1)
        self.convDb = nn.Conv2d(w.cd, DESCRIPTOR_DIM, 4, stride=2, padding=0)
        self.convDc = nn.Conv2d(DESCRIPTOR_DIM, DESCRIPTOR_DIM, 1)
        self.trans_conv = nn.ConvTranspose2d(DESCRIPTOR_DIM, DESCRIPTOR_DIM, 2, stride=2)
        # Detector head (U-Net decoder).
        self.dconv_up3 = _double_conv(w.c4 + w.c3, w.c3)
        self.dconv_up2 = _double_conv(w.c3 + w.c2, w.c2)
        self.dconv_up1 = _double_conv(w.c2 + w.c1, w.c1)
        self.conv_last = nn.Conv2d(w.c1, 1, 1)

    def encode(self, x: torch.Tensor):
        r = self.relu
        x1 = r(self.conv1b(r(self.conv1a(x))))
        x2 = r(self.conv2b(r(self.conv2a(self.pool(x1)))))
        x3 = r(self.conv3b(r(self.conv3a(self.pool(x2)))))
        x4 = r(self.conv4b(r(self.conv4a(self.pool(x3)))))
        return x1, x2, x3, x4

    def descriptor_head(self, x4: torch.Tensor) -> torch.Tensor:
        d = self.relu(self.convDa(x4))
        d = self.relu(self.convDb(d))
        d = F.normalize(self.convDc(d), p=2, dim=1)
        return self.trans_conv(d)

    def dconv_up3_input(self, x3, x4) -> torch.Tensor:
        """concat(up(``x4``), ``x3``), (N, c4+c3, H/4, W/4)."""
        return torch.cat([upsample(x4), x3], dim=1)

    def quarter_resolution_decoder(self, x3, x4) -> torch.Tensor:
        """``dconv_up3`` on :meth:`dconv_up3_input`: the decoder at 1/4 resolution, (N, c3, H/4, W/4)."""
        return self.dconv_up3(self.dconv_up3_input(x3, x4))

    def dconv_up2_input(self, x2, x3, x4) -> torch.Tensor:
        """concat(up(:meth:`quarter_resolution_decoder`), ``x2``), (N, c3+c2, H/2, W/2)."""
        return torch.cat([upsample(self.quarter_resolution_decoder(x3, x4)), x2], dim=1)

    def half_resolution_decoder(self, x2, x3, x4) -> torch.Tensor:
        """``dconv_up3`` then ``dconv_up2``: the decoder up to 1/2 resolution, (N, c2, H/2, W/2)."""
        return self.dconv_up2(self.dconv_up2_input(x2, x3, x4))

    def detector_head(self, x1, x2, x3, x4) -> torch.Tensor:
        y = self.half_resolution_decoder(x2, x3, x4)
        y = self.full_resolution_block(torch.cat([upsample(y), x1], dim=1))
        return torch.sigmoid(self.conv_last(y))

    def full_resolution_block(self, u: torch.Tensor) -> torch.Tensor:
        """The decoder's last block on concat(upsampled ``dconv_up2`` output, ``x1``) -> (N, c1, H, W)."""
        return self.dconv_up1(u)

    def forward(self, x: torch.Tensor):
        x1, x2, x3, x4 = self.encode(x)
        return self.detector_head(x1, x2, x3, x4), self.descriptor_head(x4)


class SuperRetinaFastNet(SuperRetinaNet):
    """SuperRetina with a detector head that does no convolution at full resolution.

    The published decoder's last block (``dconv_up1``: upsample to full resolution, concat with
    ``x1``, two 3x3 convolutions) and ``conv_last`` are replaced by a head at 1/2 resolution:

    * ``det_skip``: 2x2 stride-2 convolution of ``x1`` (N, c1, H, W) -> (N, cs, H/2, W/2) —
      the full-resolution detail, read once, with each 2x2 cell's layout kept in the channels;
    * ``det_fuse`` (3x3) on concat(``dconv_up2`` output, ``det_skip``), ``det_refine`` (3x3);
    * ``det_out``: 1x1 convolution to 4 channels, depth-to-space (pixel shuffle) by 2 ->
      (N, 1, H, W) logits, sigmoid.

    Inputs, outputs and the encoder/descriptor parameters are those of :class:`SuperRetinaNet`,
    so a checkpoint of the published head gives this network identical descriptors when its
    encoder and descriptor head are copied over (training/distill.py).
    """

    SKIP = 32   # channels of det_skip
    HIDDEN = 32  # channels of det_fuse / det_refine

    def __init__(self, widths: Widths | str = "half"):
        super().__init__(widths)
        w = self.widths
        del self.dconv_up1, self.conv_last
        self.det_skip = nn.Conv2d(w.c1, self.SKIP, 2, stride=2)
        self.det_fuse = nn.Conv2d(w.c2 + self.SKIP, self.HIDDEN, 3, padding=1)
        self.det_refine = nn.Conv2d(self.HIDDEN, self.HIDDEN, 3, padding=1)
        self.det_out = nn.Conv2d(self.HIDDEN, 4, 1)

    def detector_logits(self, x1, x2, x3, x4) -> torch.Tensor:
        """(N, 1, H, W) logits of the detector (before the sigmoid)."""
        r = self.relu
        y = self.half_resolution_decoder(x2, x3, x4)  # (N, c2, H/2, W/2)
        y = r(self.det_fuse(torch.cat([y, r(self.det_skip(x1))], dim=1)))
        y = r(self.det_refine(y))
        return F.pixel_shuffle(self.det_out(y), 2)

    def detector_head(self, x1, x2, x3, x4) -> torch.Tensor:
        return torch.sigmoid(self.detector_logits(x1, x2, x3, x4))


class SuperRetinaLowRankNet(SuperRetinaNet):
    """SuperRetina with its full-resolution decoder block factorised to low rank.

    ``dconv_up1`` (two 3x3 convolutions at full resolution, c2+c1 -> c1 -> c1: 38 % of the
    network's time at 768x768) keeps its two layers, each factorised where it is cheap:

    * layer a reads its 64 input channels through a 1x1 convolution to ``ranks[0]``
      (``up1_in``), then a 3x3 convolution back to c1 (``up1_a``), ReLU;
    * layer b is a 3x3 convolution to ``ranks[1]`` channels (``up1_b_reduce``), then a 1x1
      convolution back to c1 (``up1_b_expand``), ReLU.

    (A 3x3 convolution over 64 full-resolution channels costs the CPU about as much whatever its
    output width, so layer a is reduced on its input side; layer b's outputs lie in few
    dimensions, so it is reduced on its output side.) The factors are fitted to the published
    block (``model/lowrank.py``) and then distilled (``training/distill.py --student lowrank``).
    With ``up2_ranks``, ``dconv_up2`` (1/2 resolution, c3+c2 -> c2 -> c2) is factorised the same
    way (``up2_in``, ``up2_a``, ``up2_b_reduce``, ``up2_b_expand``), and with ``up3_ranks`` (only
    with ``up2_ranks``) ``dconv_up3`` too (1/4 resolution, c4+c3 -> c3 -> c3; ``up3_*``).
    Everything else is the published network's, so the descriptors are bit-identical.
    """

    def __init__(self, widths: Widths | str = "half", ranks: tuple[int, int] = (16, 8),
                 up2_ranks: tuple[int, int] | None = None, up3_ranks: tuple[int, int] | None = None):
        super().__init__(widths)
        if up3_ranks is not None and up2_ranks is None:
            raise ValueError("up3_ranks needs up2_ranks (dconv_up3 is factorised only above a factorised dconv_up2)")
        # channels of each block's skip input (x1, x2, x3): the rest of its input is the upsampled part
        self._skip_width = {"up1_": self.widths.c1, "up2_": self.widths.c2, "up3_": self.widths.c3}
        self.ranks = self._replace_block("dconv_up1", "up1_", ranks)
        # optionally dconv_up2 (1/2 resolution, c3+c2 -> c2 -> c2) and dconv_up3 (1/4, c4+c3 -> c3 -> c3)
        self.up2_ranks = self._replace_block("dconv_up2", "up2_", up2_ranks)
        self.up3_ranks = self._replace_block("dconv_up3", "up3_", up3_ranks)

    def _replace_block(self, name: str, prefix: str, ranks) -> tuple[int, int] | None:
        """The published block ``name`` replaced by a factorised one of its widths (``ranks``
        given); returns the ranks as ints, or None (block kept) without them."""
        if ranks is None:
            return None
        ranks = (int(ranks[0]), int(ranks[1]))
        conv = getattr(self, name)[0]
        delattr(self, name)
        self._factorised_block(prefix, conv.in_channels, conv.out_channels, ranks)
        return ranks

    def _factorised_block(self, prefix: str, cin: int, cout: int, ranks: tuple[int, int]) -> None:
        setattr(self, prefix + "in", nn.Conv2d(cin, ranks[0], 1))
        setattr(self, prefix + "a", nn.Conv2d(ranks[0], cout, 3, padding=1))
        setattr(self, prefix + "b_reduce", nn.Conv2d(cout, ranks[1], 3, padding=1, bias=False))
        setattr(self, prefix + "b_expand", nn.Conv2d(ranks[1], cout, 1))

    def _after_in(self, v: torch.Tensor, prefix: str = "up1_") -> torch.Tensor:
        r = self.relu
        y = r(getattr(self, prefix + "a")(v))
        return r(getattr(self, prefix + "b_expand")(getattr(self, prefix + "b_reduce")(y)))

    def full_resolution_block(self, u: torch.Tensor) -> torch.Tensor:
        return self._after_in(self.up1_in(u))

    def half_resolution_block(self, u: torch.Tensor) -> torch.Tensor:
        """The factorised ``dconv_up2`` on its input concat(up(``dconv_up3`` output), ``x2``) (up2_ranks only)."""
        return self._after_in(self.up2_in(u), "up2_")

    def _split_in(self, prefix: str, low: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """``<prefix>in`` (1x1) of concat(up(low), skip), its ``low`` part run before the upsampling:
        a 1x1 convolution commutes with bilinear interpolation (both linear, the interpolation
        weights sum to 1), so this equals it up to rounding, with ranks[0] channels upsampled
        instead of low's and no concatenation at the higher resolution."""
        conv = getattr(self, prefix + "in")
        # A Python int, not low.shape[1]: the ONNX export then slices the weight by constants,
        # which the converters fold (a shape-dependent slice stays a runtime op, and int8
        # quantization takes it for an activation).
        c = conv.in_channels - self._skip_width[prefix]
        return upsample(F.conv2d(low, conv.weight[:, :c], conv.bias)) + F.conv2d(skip, conv.weight[:, c:])

    def quarter_resolution_decoder(self, x3, x4) -> torch.Tensor:
        if self.up3_ranks is None:
            return super().quarter_resolution_decoder(x3, x4)
        return self._after_in(self._split_in("up3_", x4, x3), "up3_")

    def half_resolution_decoder(self, x2, x3, x4) -> torch.Tensor:
        if self.up2_ranks is None:
            return super().half_resolution_decoder(x2, x3, x4)
        return self._after_in(self._split_in("up2_", self.quarter_resolution_decoder(x3, x4), x2), "up2_")

    def detector_head(self, x1, x2, x3, x4) -> torch.Tensor:
        """As the published head, with ``up1_in`` split over its two inputs (:meth:`_split_in`)."""
        y = self.half_resolution_decoder(x2, x3, x4)
        return torch.sigmoid(self.conv_last(self._after_in(self._split_in("up1_", y, x1))))


ARCHITECTURES = {"unet": SuperRetinaNet, "fast": SuperRetinaFastNet, "lowrank": SuperRetinaLowRankNet}
LOWRANK_HEAD = "up1_"   # parameter-name prefix of the factorised block


def architecture_of(state_dict: dict) -> str:
    """``unet``, ``fast`` or ``lowrank``: which detector head a checkpoint's parameter names belong to."""
    names = [k.removeprefix("module.") for k in state_dict]
    if any(k.startswith("det_out.") for k in names):
        return "fast"
    return "lowrank" if any(k.startswith(LOWRANK_HEAD) for k in names) else "unet"


def infer_ranks(state_dict: dict, prefix: str = "up1_") -> tuple[int, int] | None:
    """The two ranks of a lowrank checkpoint's factorised block (``up1_``, or ``up2_`` / ``up3_``:
    None where that block is not factorised), read off its weight shapes."""
    if prefix + "in.weight" not in state_dict:
        return None
    return (state_dict[prefix + "in.weight"].shape[0], state_dict[prefix + "b_reduce.weight"].shape[0])


def infer_widths(state_dict: dict) -> Widths:
    """Channel counts of a checkpoint, read off its weight shapes (official or narrow)."""
    return Widths(
        c1=state_dict["conv1a.weight"].shape[0],
        c2=state_dict["conv2a.weight"].shape[0],
        c3=state_dict["conv3a.weight"].shape[0],
        c4=state_dict["conv4a.weight"].shape[0],
        cd=state_dict["convDa.weight"].shape[0],
    )


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded safely or is not in the SuperRetina format (one line)."""


def read_checkpoint(path, map_location="cpu") -> dict:
    """The dict saved in a checkpoint file, unpickled with ``weights_only=True``.

    A ``.pth`` is a pickle: loading one with ``weights_only=False`` runs whatever code it
    names. Only tensors, containers and plain values are accepted here (this project's
    checkpoints, the official ones and training resume states all are), so a user-supplied
    file cannot run code; anything else is a :class:`CheckpointError`.
    """
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except (OSError, EOFError, RuntimeError, ValueError, pickle.UnpicklingError) as exc:
        reason = " ".join(str(exc).split())
        raise CheckpointError(f"{path}: not a loadable weights-only checkpoint ({reason[:200]})") from None
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("net"), dict):
        raise CheckpointError(f"{path}: expected a checkpoint dict with key 'net' (the SuperRetina format)")
    return ckpt


def load_checkpoint(path, map_location="cpu") -> SuperRetinaNet:
    """Load a ``{'net': state_dict}`` checkpoint (official or this project's) with strict keys."""
    ckpt = read_checkpoint(path, map_location)
    state = ckpt["net"]
    state = {k.removeprefix("module."): v for k, v in state.items()}  # saved from DataParallel
    arch = architecture_of(state)
    extra = {"ranks": infer_ranks(state), "up2_ranks": infer_ranks(state, "up2_"),
             "up3_ranks": infer_ranks(state, "up3_")} if arch == "lowrank" else {}
    net = ARCHITECTURES[arch](infer_widths(state), **extra)
    net.load_state_dict(state, strict=True)
    return net.eval()


def checkpoint_dict(net: SuperRetinaNet, **extra) -> dict:
    """The reference's checkpoint layout plus this project's metadata under separate keys
    (``architecture``: ``unet``, ``fast`` or ``lowrank``, also readable off the parameter names)."""
    arch = next(name for name, cls in ARCHITECTURES.items() if type(net) is cls)
    return {"net": net.state_dict(), "widths": asdict(net.widths), "architecture": arch, **extra}
