"""The network in PyTorch behind the same ``infer`` call as the MindX stream client.

Lets the registration code run on a model being trained (validation) or as the PyTorch-eager
baseline, without exporting to ONNX first.
"""
from __future__ import annotations

import numpy as np
import torch


class TorchStream:
    def __init__(self, net: torch.nn.Module, bf16: bool = False):
        self.net = net.eval()
        self.bf16 = bf16

    @torch.no_grad()
    def infer(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, 1, H, W) float32 → (detector (N, H, W), descriptor (N, 256, h, w)) float32."""
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            det, desc = self.net(torch.from_numpy(np.ascontiguousarray(batch, np.float32)))
        return det.float()[:, 0].numpy(), desc.float().numpy()
