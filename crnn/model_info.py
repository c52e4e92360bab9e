"""`crnn info MODEL`: what an exported model is, from the file alone (its metadata and its graph).

Users of a model file ask the same questions before they deploy it: which alphabet, what input, where it
came from, how big, FP32 or INT8 and how much of the graph runs quantized. All of it is in the ONNX file.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

from crnn.onnx_model import read_metadata

# ops that only a quantized graph holds (QDQ static, dynamic, and ORT's fused integer kernels)
INT8_OPS = {
    "QuantizeLinear",
    "DequantizeLinear",
    "DynamicQuantizeLinear",
    "DynamicQuantizeLSTM",
    "MatMulInteger",
    "ConvInteger",
    "QLinearConv",
    "QLinearMatMul",
    "DynamicQuantizeMatMul",
}
DTYPES = {1: "float32", 2: "uint8", 3: "int8", 6: "int32", 7: "int64", 10: "float16", 16: "bfloat16"}


def _shape(value_info) -> list:
    dims = value_info.type.tensor_type.shape.dim
    return [d.dim_param or d.dim_value for d in dims]


def describe_model(path: str | Path) -> dict:
    """Metadata, graph signature, op types and weight precision of a crnn-toolkit ONNX file."""
    import onnx

    meta = read_metadata(path)  # a clear error for a missing or foreign file
    p = Path(path)
    model = onnx.load(str(p))
    g = model.graph
    ops = Counter(n.op_type for n in g.node)
    weights = Counter()
    for t in g.initializer:
        n = 1
        for d in t.dims:
            n *= d
        weights[DTYPES.get(t.data_type, str(t.data_type))] += n
    charset = meta["charset"]
    quant_ops = sum(c for op, c in ops.items() if op in INT8_OPS)
    return {
        "path": str(p),
        "size_bytes": p.stat().st_size,
        "sha256": hashlib.sha256(p.read_bytes()).hexdigest(),
        "precision": "int8" if quant_ops else "fp32",
        "alphabet_size": len(charset),
        "num_classes": len(charset) + 1,
        "input_spec": json.loads(meta["input_spec"]),
        "model_config": json.loads(meta["model_config"]),
        "lineage": json.loads(meta.get("lineage", "{}")),
        "opset": {o.domain or "ai.onnx": o.version for o in model.opset_import},
        "inputs": {i.name: _shape(i) for i in g.input if i.name not in {t.name for t in g.initializer}},
        "outputs": {o.name: _shape(o) for o in g.output},
        "ops": dict(sorted(ops.items(), key=lambda kv: (-kv[1], kv[0]))),
        "quantized_ops": quant_ops,
        "weights_by_dtype": dict(weights),
    }


def format_info(info: dict) -> str:
    mc, spec, lin = info["model_config"], info["input_spec"], info["lineage"]
    ops = ", ".join(f"{op} x{c}" for op, c in info["ops"].items())
    weights = ", ".join(f"{n:,} {dt}" for dt, n in info["weights_by_dtype"].items())
    rows = [
        ("file", f"{info['path']} ({info['size_bytes'] / 1e6:.2f} MB, sha256 {info['sha256'][:12]})"),
        ("precision", f"{info['precision']} ({info['quantized_ops']} quantization ops)"),
        ("alphabet", f"{info['alphabet_size']} characters + blank"),
        (
            "input",
            f"height {spec.get('height')}, "
            + ", ".join(f"{k}={v}" for k, v in spec.items() if k != "height"),
        ),
        (
            "model",
            f"{mc.get('name')}: channels {mc.get('channels')}, block {mc.get('block', 'conv')}, "
            f"BiLSTM {mc.get('lstm_layers')}x{mc.get('lstm_hidden')}, stride {mc.get('hstride')}",
        ),
        ("graph inputs", ", ".join(f"{k} {v}" for k, v in info["inputs"].items())),
        ("graph outputs", ", ".join(f"{k} {v}" for k, v in info["outputs"].items())),
        ("opset", ", ".join(f"{k} {v}" for k, v in info["opset"].items())),
        ("ops", ops),
        ("weights", weights),
        ("lineage", ", ".join(f"{k}={v}" for k, v in lin.items() if not isinstance(v, dict | list)) or "-"),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)
