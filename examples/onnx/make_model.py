"""A small image encoder with random weights, exported to ONNX with its contract inside.

Stands in for your own trained encoder (a ViT- or CLIP-style patch encoder): frames ``[B, 3, 112, 112]``
(RGB, normalised with the ImageNet mean and std) -> one 24-value embedding per 16 x 16 patch,
``[B, 24, 7, 7]``. The contract livetok checks is written into the file's metadata as ``livetok.json``.

    python make_model.py OUT.onnx
"""

from __future__ import annotations

import json
import sys
import warnings

import onnx
import torch
from torch import nn

CONTRACT = {
    "modality": "video", "height": 112, "width": 112,   # the model's input size (px)
    "input_name": "pixels", "normalize": "meanstd",     # [B, 3, H, W] float32, (x / 255 - mean) / std
    "output_name": "patches", "output_layout": "BDHW", "dim": 24, "grid": [7, 7],  # [B, 24, 7, 7]
}


class PatchEncoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.patch = nn.Conv2d(3, 48, 16, stride=16)
        self.mix = nn.Conv2d(48, 24, 1)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.mix(torch.tanh(self.patch(pixels)))


def main(path: str) -> None:
    torch.manual_seed(0)
    model = PatchEncoder().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.randn(2, 3, 112, 112),), path, input_names=["pixels"],
                          output_names=["patches"], dynamic_axes={"pixels": {0: "B"}, "patches": {0: "B"}},
                          dynamo=False, opset_version=17)
    proto = onnx.load(path)
    entry = proto.metadata_props.add()
    entry.key, entry.value = "livetok.json", json.dumps(CONTRACT)
    onnx.save(proto, path)
    print(f"example: wrote {path}: a random-weight ONNX patch encoder, 7 x 7 embeddings of 24 values a frame")


if __name__ == "__main__":
    main(sys.argv[1])
