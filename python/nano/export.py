"""Model files: checkpoint -> .bin export, LoRA plug-ins, format conversion, and .bin -> PyTorch;
GGUF (llama.cpp) and Hugging Face exports.

The byte format is defined once, in Rust (``rust/infer/src/format``, documented in docs/format.md); this
module only gathers float32 arrays, the config and the vocabulary, and hands them to the Rust writer.
GGUF and Hugging Face directories are written by ``nano.export_gguf`` and ``nano.export_hf``
(docs/interop.md).

    python -m nano.export OUT.bin --checkpoint CKPT.pt [--quant f32|f16|q8_0|q4_0] [--legacy]
    python -m nano.export OUT.bin CKPT.pt --quant q8_0
    python -m nano.export OUT.bin --lora LORA.pt [--legacy]
    python -m nano.export OUT.bin --from-bin OLD.bin [--quant q8_0] [--legacy]
    python -m nano.export OUT.gguf --checkpoint CKPT.pt | --from-bin FILE [--quant f32|f16|q8_0|q4_0]
    python -m nano.export OUT_DIR --format hf --checkpoint CKPT.pt | --from-bin FILE
    python -m nano.export OUT.bin --from-hf HF_MODEL_DIR [--quant f32|f16|q8_0|q4_0]   (nano.import_hf)
    python -m nano.export OUT.bin --from-gguf FILE.gguf [--quant f32|f16|q8_0|q4_0]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from nano import _native
from nano._cli import EXPECTED_ERRORS, message
from nano._outputs import check_replaceable_file, clean_stale_temps

__all__ = ["export_checkpoint", "export_lora", "convert_bin", "convert_gguf", "load_bin", "read_bin", "export_gguf",
           "export_hf", "main"]

DTYPES = ("f32", "f16", "q8_0", "q4_0")
FORMATS = ("bin", "gguf", "hf")
_COMPILE_PREFIX = "_orig_mod."


def _numpy_tensors(state_dict: dict) -> dict[str, np.ndarray]:
    """Base weights as contiguous float32 arrays (adapters and the tied output head left out)."""
    out = {}
    for name, t in state_dict.items():
        name = name.removeprefix(_COMPILE_PREFIX)
        if ".lora_" in name or not hasattr(t, "detach"):
            continue
        out[name] = np.ascontiguousarray(t.detach().to("cpu").float().numpy())
    return out


def _file_config(model_config: dict, tied: bool = True) -> str:
    cfg = dict(model_config)
    cfg["tied_head"] = tied
    return json.dumps(cfg)


def _is_model_file(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(4) == b"S4DB"  # the magic every Nano and 2024.10 model file starts with


def _prepare_out(out, source) -> Path:
    """The output path, after checking it replaces only a model file and no input (see nano._outputs)."""
    out = Path(out)
    inputs = [source] if isinstance(source, (str, Path)) else []
    check_replaceable_file(out, _is_model_file, inputs, what="model file")
    out.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temps(out.parent, out.name)
    return out


def _write(out, config: dict, tokenizer_json: str, tensors: dict, dtype: str, legacy: bool,
           base_hash: str | None) -> Path:
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; choose from {', '.join(DTYPES)}")
    tied = "output.weight" not in tensors or np.array_equal(tensors["output.weight"],
                                                            tensors["tok_embeddings.weight"])
    if tied:
        tensors = {k: v for k, v in tensors.items() if k != "output.weight"}
    _native.write_model(str(out), _file_config(config, tied), tokenizer_json, tensors, dtype, legacy, base_hash)
    return out


def export_checkpoint(checkpoint, out, dtype: str = "f32", legacy: bool = False) -> Path:
    """Write a checkpoint (path or loaded dict) as a model file; returns the output path."""
    import torch

    from nano.model import base_hash

    out = _prepare_out(out, checkpoint)
    ckpt = checkpoint
    if not isinstance(ckpt, dict):
        from nano.checkpoint import load_checkpoint

        ckpt = load_checkpoint(checkpoint)
    tokenizer_json = ckpt.get("tokenizer_json")
    if not tokenizer_json:
        raise ValueError("the checkpoint carries no tokenizer_json; cannot write a self-contained model file")
    state = {k.removeprefix(_COMPILE_PREFIX): v for k, v in ckpt["model"].items() if torch.is_tensor(v)}
    base = {k: v for k, v in state.items() if ".lora_" not in k}
    return _write(out, ckpt["model_config"], tokenizer_json, _numpy_tensors(base), dtype, legacy,
                  base_hash(base))


def export_lora(lora, out, legacy: bool = False) -> Path:
    """Write a LoRA file (.pt path or payload, format nano-lora) as a LoRA plug-in."""
    from nano.lora import read_lora

    out = _prepare_out(out, lora)
    payload = read_lora(lora)
    cfg = payload["lora_config"]
    mc = payload["model_config"]
    lora_json = json.dumps({"rank": int(cfg["rank"]), "alpha": float(cfg["alpha"]), "targets": list(cfg["targets"])})
    base_json = json.dumps({"hash": payload.get("base_hash"), **{k: mc[k] for k in
                            ("n_layer", "n_embd", "n_head", "n_kv_head", "n_hidden")}})
    tensors = {k: np.ascontiguousarray(v.detach().cpu().float().numpy()) for k, v in payload["state_dict"].items()}
    _native.write_lora(str(out), lora_json, base_json, tensors, legacy)
    return out


def read_bin(path) -> dict:
    """Everything in a model file: config (dict), tokenizer_json, tensors (float32, dequantized), info."""
    config_json, tokenizer_json, tensors, info = _native.read_model(str(path))
    return {"config": json.loads(config_json), "tokenizer_json": tokenizer_json, "tensors": tensors,
            "info": info}


def convert_bin(src, out, dtype: str = "f32", legacy: bool = False) -> Path:
    """Rewrite a model file (e.g. a published 2024.10 fp32 file) in Nano's format with any dtype."""
    import torch

    from nano.model import base_hash

    out = _prepare_out(out, src)
    data = read_bin(src)
    if data["info"].get("tokenizer_kind") == "hf":  # imported from Hugging Face: stays 2026.2
        if legacy:
            raise ValueError(f"{src}: a model imported from Hugging Face cannot be written in the 2024.10 layout")
        if dtype not in DTYPES:
            raise ValueError(f"unknown dtype {dtype!r}; choose from {', '.join(DTYPES)}")
        _native.write_hf_model(str(out), json.dumps(data["config"]), data["info"]["hf_tokenizer"],
                               data["tensors"], dtype)
        return out
    cfg = {k: v for k, v in data["config"].items() if k != "tied_head"}
    tensors = data["tensors"]
    h = data["info"].get("base_hash") or base_hash({k: torch.from_numpy(v) for k, v in tensors.items()})
    return _write(out, cfg, data["tokenizer_json"], tensors, dtype, legacy, h)


def convert_gguf(src, out, dtype: str | None = None) -> Path:
    """A llama.cpp GGUF file (architectures llama and qwen2) as a Nano file. Without ``dtype`` every tensor
    keeps its type (F32, F16, Q8_0, Q4_0 exactly; BF16 widened to f32): the Rust loader's conversion, written
    as it is. With ``dtype`` the matrices are requantized, as ``--from-bin`` does."""
    if dtype is not None:
        return convert_bin(src, out, dtype)
    out = _prepare_out(out, src)
    _native.convert_gguf(str(src), str(out))
    return out


def _source(checkpoint=None, from_bin=None) -> tuple[dict, str, dict[str, np.ndarray]]:
    """(model config, tokenizer JSON, float32 base tensors) of a checkpoint or a model file."""
    if from_bin is not None:
        data = read_bin(from_bin)
        if data["info"].get("tokenizer_kind") == "hf":
            raise ValueError(f"{from_bin}: a model imported from Hugging Face is exported from its original "
                             "folder, not from its .bin")
        cfg = {k: v for k, v in data["config"].items() if k != "tied_head"}
        return cfg, data["tokenizer_json"], {k: np.asarray(v, dtype=np.float32) for k, v in data["tensors"].items()}
    ckpt = checkpoint
    if not isinstance(ckpt, dict):
        from nano.checkpoint import load_checkpoint

        ckpt = load_checkpoint(checkpoint)
    tokenizer_json = ckpt.get("tokenizer_json")
    if not tokenizer_json:
        raise ValueError("the checkpoint carries no tokenizer_json; cannot write a self-contained model file")
    state = {k.removeprefix(_COMPILE_PREFIX): v for k, v in ckpt["model"].items() if hasattr(v, "detach")}
    base = {k: v for k, v in state.items() if ".lora_" not in k}
    cfg = dict(ckpt["model_config"])
    if cfg.get("qkv_bias") or cfg.get("rope_scaling"):
        raise ValueError("GGUF and Hugging Face exports of models with q/k/v biases or RoPE scaling are not "
                         "supported; export to .bin")
    return cfg, tokenizer_json, _numpy_tensors(base)


def export_gguf(out, *, checkpoint=None, from_bin=None, dtype: str = "f32") -> Path:
    """A checkpoint (path or loaded dict) or a model file as a llama.cpp GGUF; returns the output path."""
    from nano.export_gguf import write_llama_gguf
    from nano.tokenizer import Tokenizer

    config, tokenizer_json, tensors = _source(checkpoint, from_bin)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_llama_gguf(out, config, Tokenizer.from_json(tokenizer_json), tensors, dtype)
    return out


def export_hf(out_dir, *, checkpoint=None, from_bin=None) -> Path:
    """A checkpoint or a model file as a Hugging Face LlamaForCausalLM directory (float32)."""
    from nano.export_hf import write_hf
    from nano.tokenizer import Tokenizer

    config, tokenizer_json, tensors = _source(checkpoint, from_bin)
    return write_hf(out_dir, config, Tokenizer.from_json(tokenizer_json), tensors)


def _format_of(out: str, fmt: str | None) -> str:
    if fmt:
        return fmt
    suffix = Path(out).suffix.lower()
    if suffix == ".gguf":
        return "gguf"
    if suffix == ".bin" or suffix == "":
        return "bin"
    raise ValueError(f"cannot tell the format from {out!r}; pass --format {'|'.join(FORMATS)}")


def load_bin(path):
    """A model file as a ``nano.model.Transformer`` (eval mode) with ``.tokenizer_json`` and ``.bin_info``."""
    import torch
    from torch import nn

    from nano.model import ModelConfig, Transformer

    data = read_bin(path)
    cfg = dict(data["config"])
    tied = cfg.pop("tied_head", True)
    model = Transformer(ModelConfig.from_dict(cfg))
    state = {k: torch.from_numpy(np.array(v)) for k, v in data["tensors"].items()}
    if not tied:  # an untied head (possible in 2024.10 files) gets its own parameter
        model.output.weight = nn.Parameter(state["output.weight"].clone())
    else:
        state["output.weight"] = state["tok_embeddings.weight"]
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"{path}: tensors do not match the model: missing {missing}, unexpected {unexpected}")
    model.eval()
    model.tokenizer_json = data["tokenizer_json"]
    model.bin_info = data["info"]
    return model


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m nano.export", description=__doc__.split("\n\n")[0])
    p.add_argument("out", help="output path: .bin (Nano), .gguf (llama.cpp) or a directory (--format hf)")
    p.add_argument("input", nargs="?", help="checkpoint .pt (same as --checkpoint)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--checkpoint", help="training checkpoint (.pt)")
    src.add_argument("--lora", help="LoRA adapter file (.pt, format nano-lora)")
    src.add_argument("--from-bin", dest="from_bin", help="existing model file (2024.10 or Nano format)")
    src.add_argument("--from-hf", dest="from_hf",
                     help="Hugging Face model folder (Qwen2 / Llama: safetensors, config.json, tokenizer.json)")
    src.add_argument("--from-gguf", dest="from_gguf",
                     help="llama.cpp GGUF file (llama / qwen2; F32, F16, BF16, Q8_0, Q4_0 tensors)")
    p.add_argument("--quant", "--dtype", dest="dtype", default=None, choices=DTYPES,
                   help="weight type of the matrices (norms stay f32); default f32, or as stored for --from-gguf")
    p.add_argument("--legacy", action="store_true", help="write the original 2024.10 layout (fp32) for old engines")
    p.add_argument("--format", choices=FORMATS, default=None,
                   help="bin (Nano), gguf (llama.cpp) or hf (Hugging Face directory); default from the extension")
    a = p.parse_args(argv)
    sources = [x for x in (a.input, a.checkpoint, a.lora, a.from_bin, a.from_hf, a.from_gguf) if x]
    if len(sources) != 1:
        p.error("give exactly one input: CKPT.pt, --checkpoint, --lora, --from-bin, --from-hf or --from-gguf")
    gguf_dtype = a.dtype
    if a.dtype is None:
        a.dtype = "f32"
    try:
        fmt = _format_of(a.out, a.format)
    except ValueError as e:
        p.error(str(e))
    if fmt != "bin" and (a.lora or a.legacy or a.from_hf or a.from_gguf):
        p.error(f"--lora, --legacy, --from-hf and --from-gguf write .bin files only, not {fmt}")
    if a.from_gguf and a.legacy:
        p.error("--from-gguf writes Nano 2026 files")
    if a.from_hf and a.legacy:
        p.error("--from-hf writes Nano 2026.2 files (the 2024.10 layout has no biases or BPE tokenizers)")
    if fmt == "hf" and a.dtype != "f32":
        p.error("the Hugging Face export is float32 (transformers quantizes at load time if asked)")
    try:
        if fmt == "gguf":
            out = export_gguf(a.out, checkpoint=a.input or a.checkpoint, from_bin=a.from_bin, dtype=a.dtype)
        elif fmt == "hf":
            out = export_hf(a.out, checkpoint=a.input or a.checkpoint, from_bin=a.from_bin)
            print(f"wrote {out}/ (model.safetensors, config.json, tokenizer.json, ...)")
            return 0
        elif a.from_gguf:
            out = convert_gguf(a.from_gguf, a.out, gguf_dtype)
        elif a.from_hf:
            from nano.import_hf import import_hf

            out = import_hf(a.from_hf, a.out, a.dtype)
        elif a.lora:
            if a.dtype != "f32":
                p.error("LoRA plug-ins are stored in f32")
            out = export_lora(a.lora, a.out, a.legacy)
        elif a.from_bin:
            out = convert_bin(a.from_bin, a.out, a.dtype, a.legacy)
        else:
            out = export_checkpoint(a.input or a.checkpoint, a.out, a.dtype, a.legacy)
    except EXPECTED_ERRORS as e:
        print(f"nano.export: error: {message(e)}", file=sys.stderr)
        return 1
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
