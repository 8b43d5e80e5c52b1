"""The Nano transformer: a decoder-only Llama-style model in PyTorch.

Pre-norm RMSNorm, RoPE over interleaved pairs (2i, 2i+1), grouped-query attention through SDPA, SwiGLU FFN,
token embedding tied to the output head. The state_dict names are a contract with the exporter and the
engines (the tensor table in docs/format.md; the model in docs/training.md, "Model"); do not rename modules.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

# SDPA learned grouped-query attention (enable_gqa) in torch 2.5; older versions expand K/V by hand.
_TORCH_VERSION = tuple(int(p) for p in torch.__version__.split("+")[0].split(".")[:2])
_SDPA_HAS_GQA = _TORCH_VERSION >= (2, 5)


@dataclass
class ModelConfig:
    block_size: int = 256
    vocab_size: int = 16384
    n_layer: int = 4
    n_embd: int = 256
    n_head: int = 8
    n_kv_head: int = 4
    n_hidden: int = 768
    dropout: float = 0.0
    bias: bool = False
    use_rope: bool = True
    norm_eps: float = 1e-5
    is_causal: bool = True
    rope_theta: float = 10000.0
    # q/k/v projections with a bias (Qwen2), without the other biases of ``bias``
    qkv_bias: bool = False
    # Llama 3 RoPE frequency scaling: {"factor", "low_freq_factor", "high_freq_factor",
    # "original_max_position_embeddings"} (docs/format.md), or None
    rope_scaling: dict | None = None

    def __post_init__(self) -> None:
        for name in ("block_size", "vocab_size", "n_layer", "n_embd", "n_head", "n_kv_head", "n_hidden"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"model config: {name} must be a positive integer, got {value!r}")
        if self.n_embd % self.n_head:
            raise ValueError(f"model config: n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        if self.n_head % self.n_kv_head:
            raise ValueError(
                f"model config: n_head ({self.n_head}) must be a multiple of n_kv_head ({self.n_kv_head})"
            )
        if self.use_rope and self.head_dim % 2:
            raise ValueError(f"model config: RoPE needs an even head size, got {self.head_dim}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"model config: dropout must be in [0, 1), got {self.dropout}")
        if self.rope_scaling is not None:
            keys = {"factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"}
            s = self.rope_scaling
            if not isinstance(s, dict) or set(s) != keys or not all(
                    isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in s.values()) \
                    or s["high_freq_factor"] <= s["low_freq_factor"]:
                raise ValueError(f"model config: rope_scaling must hold positive {sorted(keys)} with "
                                 f"high_freq_factor > low_freq_factor, got {s!r}")

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        """Build from a dict (e.g. the original model_config.json); unknown keys are ignored."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    @classmethod
    def from_json(cls, path_or_text: str | Path) -> ModelConfig:
        """Read a JSON file, or parse JSON text when the argument starts with '{'."""
        text = str(path_or_text)
        if not text.lstrip().startswith("{"):
            text = Path(path_or_text).read_text(encoding="utf-8")
        return cls.from_dict(json.loads(text))

    def to_dict(self) -> dict:
        return asdict(self)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # computed in f32 so bf16/fp16 training normalises exactly like the f32 engines
        xf = x.float()
        normed = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return (normed * self.weight.float()).type_as(x)


def rope_tables(head_dim: int, length: int, theta: float,
                scaling: dict | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin tables [length, head_dim/2] with freq_i = 1/theta^(2i/head_dim), rescaled as Llama 3 does
    when ``scaling`` is given (the engine's rule, docs/format.md)."""
    freqs = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim))
    if scaling is not None:
        old = float(scaling["original_max_position_embeddings"])
        low, high, factor = (float(scaling[k]) for k in ("low_freq_factor", "high_freq_factor", "factor"))
        wavelen = 2 * math.pi / freqs
        smooth = (old / wavelen - low) / (high - low)
        blended = (1 - smooth) * freqs / factor + smooth * freqs
        freqs = torch.where(wavelen < old / high, freqs, torch.where(wavelen > old / low, freqs / factor, blended))
    angles = torch.outer(torch.arange(length, dtype=torch.float64), freqs)
    return angles.cos().float(), angles.sin().float()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate interleaved pairs (2i, 2i+1) of x [B, T, H, D] by the angles of cos/sin [T, D/2]."""
    xf = x.float().reshape(*x.shape[:-1], -1, 2)
    x0, x1 = xf[..., 0], xf[..., 1]
    cos = cos[None, :, None, :]
    sin = sin[None, :, None, :]
    out = torch.stack((x0 * cos - x1 * sin, x0 * sin + x1 * cos), dim=-1)
    return out.flatten(-2).type_as(x)


class KVCache:
    """Keys and values of past positions, n_kv_head heads per layer (not expanded to n_head).

    ``length`` is the number of positions already stored; ``Transformer.forward`` appends to it.
    """

    def __init__(self, config: ModelConfig, batch_size: int = 1, max_len: int | None = None,
                 device: torch.device | str | None = None, dtype: torch.dtype = torch.float32):
        self.max_len = max_len or config.block_size
        shape = (batch_size, config.n_kv_head, self.max_len, config.head_dim)
        self.k = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(config.n_layer)]
        self.v = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(config.n_layer)]
        self.length = 0

    def update(self, layer: int, start: int, k: torch.Tensor, v: torch.Tensor):
        """Store k/v [B, n_kv, T, D] at positions start..start+T; return all keys/values up to there."""
        end = start + k.shape[2]
        if end > self.max_len:
            raise ValueError(f"KV cache full: position {end} exceeds its length {self.max_len}")
        self.k[layer][:, :, start:end] = k
        self.v[layer][:, :, start:end] = v
        return self.k[layer][:, :, :end], self.v[layer][:, :, :end]


class Attention(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.n_head = config.n_head
        self.n_kv_head = config.n_kv_head
        self.head_dim = config.head_dim
        self.is_causal = config.is_causal
        self.dropout = config.dropout
        qkv_bias = config.bias or config.qkv_bias
        self.wq = nn.Linear(config.n_embd, config.n_head * self.head_dim, bias=qkv_bias)
        self.wk = nn.Linear(config.n_embd, config.n_kv_head * self.head_dim, bias=qkv_bias)
        self.wv = nn.Linear(config.n_embd, config.n_kv_head * self.head_dim, bias=qkv_bias)
        self.wo = nn.Linear(config.n_head * self.head_dim, config.n_embd, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(self, x, rope, layer_idx: int, start_pos: int, kv_cache: KVCache | None):
        B, T, _ = x.shape
        q = self.wq(x).view(B, T, self.n_head, self.head_dim)
        k = self.wk(x).view(B, T, self.n_kv_head, self.head_dim)
        v = self.wv(x).view(B, T, self.n_kv_head, self.head_dim)
        if rope is not None:
            cos, sin = rope
            q = apply_rope(q, cos, sin)
            k = apply_rope(k, cos, sin)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # [B, heads, T, D]
        if kv_cache is not None:
            k, v = kv_cache.update(layer_idx, start_pos, k.to(kv_cache.k[0].dtype), v.to(kv_cache.v[0].dtype))
            k, v = k.to(q.dtype), v.to(q.dtype)

        mask, causal = None, False
        if self.is_causal and T > 1:
            if k.shape[2] == T:
                causal = True
            else:  # chunk after a cached prefix: query i (position start+i) sees keys 0..start+i
                q_pos = torch.arange(start_pos, start_pos + T, device=x.device)[:, None]
                mask = torch.arange(k.shape[2], device=x.device)[None, :] <= q_pos
        gqa = {}
        if self.n_kv_head != self.n_head:
            if _SDPA_HAS_GQA:
                gqa = {"enable_gqa": True}
            else:
                rep = self.n_head // self.n_kv_head
                k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, is_causal=causal,
            dropout_p=self.dropout if self.training else 0.0, **gqa,
        )
        y = y.transpose(1, 2).reshape(B, T, self.n_head * self.head_dim)
        return self.resid_dropout(self.wo(y))


class FeedForward(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.w1 = nn.Linear(config.n_embd, config.n_hidden, bias=config.bias)
        self.w2 = nn.Linear(config.n_hidden, config.n_embd, bias=config.bias)
        self.w3 = nn.Linear(config.n_embd, config.n_hidden, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x):
        return self.dropout(self.w2(F.silu(self.w1(x)) * self.w3(x)))


class TransformerBlock(nn.Module):
    def __init__(self, layer_idx: int, config: ModelConfig):
        super().__init__()
        self.layer_idx = layer_idx
        self.attention_norm = RMSNorm(config.n_embd, config.norm_eps)
        self.attention = Attention(config)
        self.ffn_norm = RMSNorm(config.n_embd, config.norm_eps)
        self.feed_forward = FeedForward(config)

    def forward(self, x, rope, start_pos, kv_cache):
        x = x + self.attention(self.attention_norm(x), rope, self.layer_idx, start_pos, kv_cache)
        return x + self.feed_forward(self.ffn_norm(x))


class Transformer(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        if isinstance(config, dict):
            config = ModelConfig.from_dict(config)
        self.config = config
        self.tok_embeddings = nn.Embedding(config.vocab_size, config.n_embd)
        if not config.use_rope:
            self.pos_embeddings = nn.Embedding(config.block_size, config.n_embd)
        self.dropout = nn.Dropout(config.dropout)
        self.layers = nn.ModuleList(TransformerBlock(i, config) for i in range(config.n_layer))
        self.norm = RMSNorm(config.n_embd, config.norm_eps)
        self.output = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.output.weight = self.tok_embeddings.weight  # tied: one tensor
        if config.use_rope:
            cos, sin = rope_tables(config.head_dim, config.block_size, config.rope_theta, config.rope_scaling)
            # not persistent: derived from the config, so they stay out of the state_dict
            self.register_buffer("rope_cos", cos, persistent=False)
            self.register_buffer("rope_sin", sin, persistent=False)
        self.apply(self._init_weights)
        # GPT-2 style: scale the projections that write into the residual stream by depth
        for name, p in self.named_parameters():
            if name.endswith(("attention.wo.weight", "feed_forward.w2.weight")):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_params(self, non_embedding: bool = False) -> int:
        """Distinct parameters (the tied head counts once); non_embedding drops embedding tables."""
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            n -= self.tok_embeddings.weight.numel()
            if not self.config.use_rope:
                n -= self.pos_embeddings.weight.numel()
        return n

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None,
                loss_mask: torch.Tensor | None = None, kv_cache: KVCache | None = None,
                start_pos: int | None = None, last_only: bool = False, reduction: str = "mean"):
        """Return (logits, loss).

        idx [B, T] token ids. With targets [B, T]: loss = cross-entropy weighted by loss_mask [B, T]
        (1 = trained, 0 = ignored); reduction "mean" divides by the mask sum, "sum" returns the weighted
        sum (the trainer normalises across gradient-accumulation steps itself). With kv_cache the tokens are
        positions start_pos.. (default: kv_cache.length) and the cache advances by T. last_only returns the
        logits of the last position only ([B, 1, V]).
        """
        B, T = idx.shape
        if start_pos is None:
            start_pos = kv_cache.length if kv_cache is not None else 0
        if start_pos + T > self.config.block_size:
            raise ValueError(
                f"sequence of {start_pos + T} positions exceeds the model's block_size {self.config.block_size}"
            )
        h = self.tok_embeddings(idx)
        rope = None
        if self.config.use_rope:
            rope = (self.rope_cos[start_pos:start_pos + T], self.rope_sin[start_pos:start_pos + T])
        else:
            h = h + self.pos_embeddings(torch.arange(start_pos, start_pos + T, device=idx.device))
        h = self.dropout(h)
        for layer in self.layers:
            h = layer(h, rope, start_pos, kv_cache)
        if kv_cache is not None:
            kv_cache.length = start_pos + T
        h = self.norm(h)
        if targets is None:
            return self.output(h[:, -1:] if last_only else h), None
        logits = self.output(h)
        loss = token_loss(logits, targets, loss_mask, reduction)
        return logits, loss

    @torch.no_grad()
    def predict_all(self, idx: torch.Tensor) -> torch.Tensor:
        """Non-autoregressive prediction: argmax id at every position in one pass (full-attention models)."""
        logits, _ = self(idx)
        return logits.argmax(dim=-1)

    def new_kv_cache(self, batch_size: int = 1, max_len: int | None = None) -> KVCache:
        p = self.tok_embeddings.weight
        return KVCache(self.config, batch_size, max_len, device=p.device, dtype=p.dtype)

    @torch.no_grad()
    def generate(self, prompt_ids, max_new_tokens: int, *, temperature: float = 1.0, top_k: int = 0,
                 top_p: float = 1.0, repetition_penalty: float = 1.0, seed: int = 0,
                 eos_id: int | None = None, use_cache: bool = True):
        """Yield new token ids one at a time, chosen per docs/sampling.md (batch of one)."""
        from nano.sampling import Sampler

        ids = [int(t) for t in prompt_ids]
        if not ids:
            raise ValueError("generate needs a non-empty prompt")
        if len(ids) > self.config.block_size:
            raise ValueError(f"prompt of {len(ids)} tokens exceeds the context of {self.config.block_size}")
        sampler = Sampler(temperature=temperature, top_k=top_k, top_p=top_p,
                          repetition_penalty=repetition_penalty, seed=seed)
        device = self.tok_embeddings.weight.device
        cache = self.new_kv_cache() if use_cache else None
        pending = ids
        for _ in range(max_new_tokens):
            if len(ids) >= self.config.block_size:  # the sequence never outgrows the context
                break
            x = torch.tensor([pending if use_cache else ids], dtype=torch.long, device=device)
            logits, _ = self(x, kv_cache=cache, last_only=True)
            nxt = sampler.sample(logits[0, -1].float().cpu(), ids)
            if eos_id is not None and nxt == eos_id:
                return
            ids.append(nxt)
            pending = [nxt]
            yield nxt


def token_loss(logits: torch.Tensor, targets: torch.Tensor, loss_mask: torch.Tensor | None,
               reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy per token in f32, weighted by loss_mask; "mean" over trained tokens or "sum"."""
    ce = F.cross_entropy(logits.float().view(-1, logits.size(-1)), targets.reshape(-1), reduction="none")
    if loss_mask is None:
        weight_sum = torch.tensor(float(ce.numel()), device=ce.device)
        total = ce.sum()
    else:
        w = loss_mask.reshape(-1).to(ce.dtype)
        total = (ce * w).sum()
        weight_sum = w.sum()
    if reduction == "sum":
        return total
    if reduction != "mean":
        raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
    return total / weight_sum.clamp(min=1.0)


def flops_per_token(config: ModelConfig, seq_len: int | None = None) -> int:
    """Training FLOPs per token (forward + backward = 3 x forward).

    Forward per token: 2 FLOPs per weight of every matmul (attention projections, FFN, output head) plus the
    attention itself, 2 * 2 * n_layer * T * n_head*head_dim (QK^T and AV over T keys; the causal half is
    not discounted, following the PaLM/nanoGPT convention).
    """
    T = seq_len or config.block_size
    hd = config.head_dim
    d = config.n_embd
    attn_proj = d * config.n_head * hd * 2 + d * config.n_kv_head * hd * 2
    ffn = 3 * d * config.n_hidden
    matmul_weights = config.n_layer * (attn_proj + ffn) + config.vocab_size * d
    attention = 2 * config.n_layer * T * config.n_head * hd
    return 3 * (2 * matmul_weights + 2 * attention)


def base_hash(state_dict: dict) -> str:
    """16-hex-digit fingerprint of a base model's weights, naming the base of LoRA adapters.

    SHA-256 over the parameters in sorted name order: for each, the name, its shape and its values as
    float32 little-endian. LoRA parameters and the tied output head are skipped; the rest is what an
    adapter's base must match, so a checkpoint, its merged-free model and its .bin export agree.
    """
    h = hashlib.sha256()
    for name in sorted(state_dict):
        if ".lora_" in name or name == "output.weight":
            continue
        t = state_dict[name]
        if not torch.is_tensor(t):
            continue
        h.update(name.encode())
        h.update(json.dumps(list(t.shape)).encode())
        h.update(t.detach().to("cpu", torch.float32).contiguous().numpy().astype("<f4").tobytes())
    return h.hexdigest()[:16]
