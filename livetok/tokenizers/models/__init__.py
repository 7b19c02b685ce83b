"""Users' own models (TorchScript, ONNX) as tokenizers: loading, the contract, streaming encoders.

``contract`` is pure pydantic (the configuration check imports it without torch or onnxruntime);
the other modules import torch or onnxruntime only when a model is loaded. See docs/tokenizers.md
("Bring your own tokenizer": the model contract, its keys, why the codes are exact).
"""
