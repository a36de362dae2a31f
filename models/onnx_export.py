"""A BERT-style model's one output, exported to ONNX and quantized to int8 weights: what
the embedder (last hidden state) and the reader (logits) both ship as their int8 version."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def export_quantized(
    model: Any,
    output: Callable[[Any], Any],
    sample: Mapping[str, Any],
    target: Path,
    *,
    output_name: str,
    output_axes: dict[int, str],
    quantize: list[str],
) -> None:
    """Write to ``target`` the int8 ONNX graph of ``output(model(...))``: the torch
    ``model`` called with ``sample``'s tensors (batch and tokens dynamic), ``output``
    picking the one tensor it serves from what the model returns. ``quantize``: the
    operator types whose weights become int8 (onnxruntime's quantizer)."""
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic

    class Graph(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model  # a submodule: its weights are the graph's, not constants

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            return output(
                self.model(
                    input_ids=input_ids,
                    attention_mask=attention_mask,
                    token_type_ids=token_type_ids,
                )
            )

    with tempfile.TemporaryDirectory() as tmp:
        fp32 = Path(tmp) / "model.onnx"
        axes = {name: {0: "batch", 1: "tokens"} for name in INPUTS}
        torch.onnx.export(
            Graph(),
            tuple(sample[name] for name in INPUTS),
            str(fp32),
            input_names=list(INPUTS),
            output_names=[output_name],
            dynamic_axes={**axes, output_name: output_axes},
            opset_version=17,
            dynamo=False,
        )
        quantize_dynamic(
            str(fp32),
            str(target),
            weight_type=QuantType.QInt8,
            per_channel=True,
            op_types_to_quantize=quantize,
        )
