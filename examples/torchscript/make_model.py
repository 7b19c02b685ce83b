"""A small audio encoder with random weights, exported to TorchScript with its contract inside.

Stands in for your own trained encoder (a HuBERT- or wav2vec-style model): waveform ``[B, T]`` at
16 kHz -> embeddings ``[B, 16, F]``, one frame per 20 ms (hop 320) from a 25 ms window (400 samples:
20 ms of its own, 2.5 ms either side). The contract that livetok checks is written into the file as
``livetok.json`` (``torch.jit.save(..., _extra_files=...)``), so the config needs only the path.

    python make_model.py OUT.pt
"""

from __future__ import annotations

import json
import sys

import torch
from torch import nn

CONTRACT = {
    "modality": "audio", "sample_rate": 16000,
    "input_name": "input",                       # [B, T] float32 samples
    "output_name": "output", "output_layout": "BDT", "dim": 16,  # [B, 16, F]
    "hop": 320, "receptive_field": 400, "lookahead": 40,  # frame t: samples [320 t - 40, 320 t + 360)
    "frames_per_call": 5,                        # a call takes 400 + 4 x 320 samples, gives 5 frames
}


class Encoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(1, 32, 400, stride=320)  # valid: frame t sees its 400 samples only
        self.out = nn.Conv1d(32, 16, 1)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return self.out(torch.nn.functional.gelu(self.conv(input.unsqueeze(1) * 4.0)))


def main(path: str) -> None:
    torch.manual_seed(0)
    model = Encoder().eval()
    torch.jit.save(torch.jit.script(model), path, _extra_files={"livetok.json": json.dumps(CONTRACT)})
    print(f"example: wrote {path}: a random-weight TorchScript encoder, 16-value embeddings every 20 ms")


if __name__ == "__main__":
    main(sys.argv[1])
