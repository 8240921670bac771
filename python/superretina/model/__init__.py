"""PyTorch side of SuperRetina: network, export and training (the `train` extra).

Nothing in this sub-package is imported on the inference path, which needs only ONNX Runtime.
"""
