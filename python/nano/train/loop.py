"""The training loop behind ``nano.train.run`` and ``python -m nano.train``.

One step = gradient_accumulation_steps micro-batches per rank. The loss is the masked token cross-entropy
summed over every micro-batch of every rank and divided by the number of trained tokens in all of them, so
the gradient does not depend on how a global batch is split across micro-steps or ranks.
"""

from __future__ import annotations

import contextlib
import copy
import math
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from nano.checkpoint import FORMAT, VERSION, CheckpointWriter, load_checkpoint, rng_state, set_rng_state
from nano.lora import LoraConfig, apply_lora, lora_modules, save_lora
from nano.model import ModelConfig, Transformer, base_hash, flops_per_token
from nano.tokenizer import BOS, EOS
from nano.train import runtime
from nano.train.config import normalise
from nano.train.metrics import MetricsLog, peak_flops

# model-config keys that fix the weights' shapes (dropout etc. may change between runs)
SHAPE_KEYS = ("vocab_size", "n_layer", "n_embd", "n_head", "n_kv_head", "n_hidden", "bias", "use_rope")


def run(model_config: dict | None, train_config: dict, *, train_loader=None, val_loader=None,
        tokenizer=None, log: bool = True, config_dir: str | Path | None = None) -> dict:
    """Train a model; returns final metrics, the checkpoint path and the (unwrapped) model.

    model_config may be None when train_config's from_checkpoint provides it. Loaders are any objects with
    next_batch() -> (x, y, mask), state_dict(), load_state_dict(); by default BlockLoaders over the
    train_config's dataset paths.
    """
    cfg = normalise(train_config, config_dir)
    _check_save_dir(cfg)
    ddp, device = runtime.setup_distributed(cfg["device"])
    try:
        return _Trainer(cfg, ddp, device, model_config, train_loader, val_loader, tokenizer, log).train()
    finally:
        if ddp.owns_group and dist.is_initialized():
            dist.destroy_process_group()


class TrainingDiverged(ValueError):
    """The loss or the weights stopped being finite numbers; nothing from that point on was saved."""


def _check_save_dir(cfg: dict) -> None:
    """A new run must not overwrite or prune the checkpoint it starts from (a resumed run continues its own)."""
    out = Path(cfg["save_checkpoint_to"])
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"save_checkpoint_to {out}: exists and is not a directory")
    src = cfg["from_checkpoint"]
    if cfg["resume"] or not src or not out.is_dir():
        return
    src = Path(src)
    if src.parent.resolve() == out.resolve() and CheckpointWriter.writes(src.name):
        raise FileExistsError(
            f"from_checkpoint {src} is in save_checkpoint_to {out}, where this new run would overwrite or prune "
            "it; save to another directory (or continue that run with --resume)")


def _checkpoint_to_load(cfg: dict) -> tuple[dict | None, bool]:
    """(checkpoint, resuming): resume continues a run; from_checkpoint alone starts a new run from weights."""
    if cfg["resume"]:
        path = cfg["from_checkpoint"] or Path(cfg["save_checkpoint_to"]) / "last.pt"
        return load_checkpoint(path), True
    if cfg["from_checkpoint"]:
        return load_checkpoint(cfg["from_checkpoint"]), False
    return None, False


def _model_config(given: dict | None, ckpt: dict | None, cfg: dict) -> ModelConfig:
    if given is None and ckpt is None:
        raise ValueError("no model config: pass one (-m MODEL.json) or a from_checkpoint to start from")
    mc = ModelConfig.from_dict(ckpt["model_config"] if given is None else given).to_dict()
    if ckpt is not None and given is not None:
        saved = ModelConfig.from_dict(ckpt["model_config"]).to_dict()
        diff = {k: (saved[k], mc[k]) for k in SHAPE_KEYS if saved[k] != mc[k]}
        if diff:
            raise ValueError(f"model config does not match the checkpoint's (checkpoint, config): {diff}")
    if cfg["dropout"] is not None:
        mc["dropout"] = float(cfg["dropout"])
    return ModelConfig.from_dict(mc)


def _default_loaders(cfg: dict, block_size: int, ddp: runtime.Dist, train_loader, val_loader):
    from nano.data.loader import BlockLoader

    shuffle = cfg["shuffle"]
    if shuffle == "auto":  # ranks must not overlap: epoch mode strides one permutation by rank
        shuffle = "epoch" if ddp.enabled else "random"
    if train_loader is None:
        if not cfg["train_data"]:
            raise ValueError("no training data: set train_data (a prepared dataset directory) or pass a loader")
        train_loader = BlockLoader(cfg["train_data"], "train", block_size, int(cfg["batch_size"]),
                                   seed=int(cfg["random_seed"]), rank=ddp.rank, world_size=ddp.world_size,
                                   shuffle=shuffle)
        if val_loader is None:
            try:
                val_loader = BlockLoader(cfg["val_data"] or cfg["train_data"], "val", block_size,
                                         int(cfg["batch_size"]), seed=int(cfg["random_seed"]) + 1,
                                         rank=ddp.rank, world_size=ddp.world_size)
            except ValueError as e:  # e.g. a split too small for one block: train without validation
                print(f"nano.train: no validation ({e})", file=sys.stderr)
    return train_loader, val_loader


def _tokenizer_info(cfg: dict, loader, tokenizer) -> tuple[object | None, str | None]:
    """The tokenizer object (None when unavailable) and its vocabulary JSON text, for checkpoints."""
    data_dir = getattr(loader, "data_dir", None)
    path = cfg["tokenizer_path"] or (Path(data_dir) / "tokenizer.json" if data_dir else None)
    if tokenizer is None and path and Path(path).exists():
        from nano.tokenizer import Tokenizer

        tokenizer = Tokenizer.from_file(str(path))
    if tokenizer is not None:
        return tokenizer, tokenizer.to_json()
    return None, None


def _check_agreement(model_cfg: ModelConfig, loader, tokenizer, ckpt: dict | None) -> str | None:
    """Data, tokenizer, model and checkpoint must use the same vocabulary; returns its hash."""
    meta = getattr(loader, "meta", None) or {}
    data_hash = getattr(loader, "tokenizer_hash", None)
    if meta.get("vocab_size") is not None and int(meta["vocab_size"]) != model_cfg.vocab_size:
        raise ValueError(
            f"vocabulary size mismatch: the data was prepared with a {meta['vocab_size']}-token vocabulary, "
            f"the model has vocab_size {model_cfg.vocab_size}"
        )
    tok_hash = tokenizer.hash if tokenizer is not None else None
    if tokenizer is not None and tokenizer.vocab_size != model_cfg.vocab_size:
        raise ValueError(f"vocabulary size mismatch: the tokenizer has {tokenizer.vocab_size} tokens, "
                         f"the model has vocab_size {model_cfg.vocab_size}")
    if data_hash and tok_hash and data_hash != tok_hash:
        raise ValueError(f"tokenizer mismatch: the data was prepared with tokenizer {data_hash}, "
                         f"the given tokenizer is {tok_hash}")
    ckpt_hash = ckpt.get("tokenizer_hash") if ckpt else None
    mine = data_hash or tok_hash
    if ckpt_hash and mine and ckpt_hash != mine:
        raise ValueError(f"tokenizer mismatch: the checkpoint was trained with tokenizer {ckpt_hash}, "
                         f"the data uses {mine}")
    return mine or ckpt_hash


def _gather(obj, ddp: runtime.Dist) -> list:
    if not ddp.enabled:
        return [obj]
    out = [None] * ddp.world_size
    dist.all_gather_object(out, obj)
    return out


class _Trainer:
    def __init__(self, cfg, ddp, device, model_config, train_loader, val_loader, tokenizer, log):
        self.cfg, self.ddp, self.device = cfg, ddp, device
        self.log = log and ddp.is_main
        if cfg["num_threads"]:
            torch.set_num_threads(int(cfg["num_threads"]))
        seed = int(cfg["random_seed"])
        random.seed(seed + ddp.rank)
        np.random.seed(seed + ddp.rank)
        torch.manual_seed(seed)  # same initial weights on every rank

        ckpt, self.resuming = _checkpoint_to_load(cfg)
        self.model_cfg = _model_config(model_config, ckpt, cfg)
        self.train_loader, self.val_loader = _default_loaders(cfg, self.model_cfg.block_size, ddp,
                                                              train_loader, val_loader)
        self.tokenizer, self.tokenizer_json = _tokenizer_info(cfg, self.train_loader, tokenizer)
        if self.tokenizer_json is None and ckpt is not None:
            self.tokenizer_json = ckpt.get("tokenizer_json")
        self.tokenizer_hash = _check_agreement(self.model_cfg, self.train_loader, self.tokenizer, ckpt)

        self.model = Transformer(self.model_cfg)
        self._load_weights(ckpt)
        self.model.to(device)
        self.dtype = runtime.amp_dtype(cfg["dtype"], device)
        self.use_amp = bool(cfg["use_amp"]) and self.dtype != torch.float32
        self.wrapped = self._wrap()
        if self.log:
            print(f"nano.train: {self.model.num_params() / 1e6:.2f}M parameters on {device}, "
                  f"{'autocast ' + str(self.dtype).removeprefix('torch.') if self.use_amp else 'float32'}, "
                  f"{self._parallel_mode()}", file=sys.stderr)
        self.optimizer = runtime.make_optimizer(self.wrapped, cfg, device)
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.use_amp and self.dtype == torch.float16)
        self.step, self.best_val = 0, math.inf
        if self.resuming:
            self._restore(ckpt)
        if not self.resuming:  # per-rank dropout streams (a resumed run restores its saved RNG states)
            torch.manual_seed(seed + ddp.rank)
        self.forward = torch.compile(self.wrapped) if cfg["compile"] else self.wrapped
        self.val_start = copy.deepcopy(self.val_loader.state_dict()) if self.val_loader is not None else None
        self.writer = CheckpointWriter(cfg["save_checkpoint_to"], cfg["keep_last"])

    # -- set-up ---------------------------------------------------------------------------------------
    def _load_weights(self, ckpt: dict | None) -> None:
        cfg = self.cfg
        state = ckpt["model"] if ckpt else None
        has_lora = bool(state) and any(".lora_" in k for k in state)
        if has_lora and not self.resuming:
            raise ValueError("the checkpoint holds LoRA adapters; merge or export them before starting a new run")
        if state is not None and not has_lora:
            self.model.load_state_dict(state)
        lora_cfg = LoraConfig(rank=cfg["lora_rank"], alpha=cfg["lora_alpha"], dropout=cfg["lora_dropout"],
                              targets=cfg["lora_targets"])
        if has_lora:
            apply_lora(self.model, LoraConfig.from_dict(ckpt["lora_config"]))
            self.model.load_state_dict(state)
            self.model.lora_base_hash = ckpt["base_hash"]
        elif cfg["use_lora"]:
            if ckpt is None:
                print("nano.train: LoRA on a randomly initialised base (no from_checkpoint)", file=sys.stderr)
            apply_lora(self.model, lora_cfg)

    def _wrap(self):
        if not self.ddp.enabled:
            return self.model
        if self.cfg["fsdp"]:
            from torch.distributed.fsdp import fully_shard

            for layer in self.model.layers:
                fully_shard(layer)
            fully_shard(self.model)
            return self.model
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(self.model, device_ids=ids)

    def _parallel_mode(self) -> str:
        """How the model is actually wrapped, for the start-up line (checked by tests and scripts/gpu_check.py)."""
        if not self.ddp.enabled:
            return "single process"
        from torch.nn.parallel import DistributedDataParallel

        if isinstance(self.wrapped, DistributedDataParallel):
            kind = "DDP"
        elif type(self.model).__name__.startswith("FSDP"):  # fully_shard swaps in an FSDP<Class> subclass
            kind = "FSDP2"
        else:
            kind = "unwrapped"
        ranks = self.ddp.world_size
        return f"{kind} over {ranks} rank{'s' if ranks > 1 else ''} ({dist.get_backend()})"

    def _model_state(self) -> dict:
        if self.cfg["fsdp"] and self.ddp.enabled:
            from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

            return get_model_state_dict(self.model, options=StateDictOptions(full_state_dict=True,
                                                                             cpu_offload=True))
        return self.model.state_dict()

    def _optimizer_state(self) -> dict:
        if self.cfg["fsdp"] and self.ddp.enabled:
            from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

            return get_optimizer_state_dict(self.model, self.optimizer,
                                            options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        return self.optimizer.state_dict()

    def _restore(self, ckpt: dict) -> None:
        if self.cfg["fsdp"] and self.ddp.enabled:
            from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

            set_optimizer_state_dict(self.model, self.optimizer, ckpt["optimizer"],
                                     options=StateDictOptions(full_state_dict=True))
        else:
            self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scaler.load_state_dict(ckpt["scaler"])
        self.step = int(ckpt["step"])
        self.best_val = float(ckpt.get("best_val_loss", math.inf))
        states = ckpt["loader_states"]
        if len(states) != self.ddp.world_size:
            raise ValueError(f"the checkpoint was written by {len(states)} ranks; resume with the same number "
                             f"(this run has {self.ddp.world_size})")
        self.train_loader.load_state_dict(states[self.ddp.rank])
        set_rng_state(ckpt["rng"][self.ddp.rank])

    # -- one step -------------------------------------------------------------------------------------
    def _sync_context(self, last_micro: bool):
        if not self.ddp.enabled:
            return contextlib.nullcontext()
        if self.cfg["fsdp"]:
            self.model.set_requires_gradient_sync(last_micro)
            return contextlib.nullcontext()
        return contextlib.nullcontext() if last_micro else self.wrapped.no_sync()

    def _all_reduce(self, t: torch.Tensor) -> torch.Tensor:
        if self.ddp.enabled:
            dist.all_reduce(t)
        return t

    def train_step(self) -> tuple[torch.Tensor, torch.Tensor, int]:
        """One optimizer step; returns (loss, grad norm, tokens processed by this rank).

        Loss and grad norm stay tensors: converting them every step would make the host wait for the GPU.
        """
        accum = int(self.cfg["gradient_accumulation_steps"])
        batches = [self.train_loader.next_batch() for _ in range(accum)]
        count = sum(float(m.sum()) for _, _, m in batches)  # masks come from the loader, on the host
        if self.ddp.enabled:  # the global count, kept on the device (no host sync)
            count = self._all_reduce(torch.tensor(count, dtype=torch.float32, device=self.device))
            # DDP/FSDP average gradients over ranks, so scale by world_size / global trained tokens
            denom = count.clamp(min=1.0) / self.ddp.world_size
        else:
            denom = max(count, 1.0)
        lr = runtime.lr_at(self.step, self.cfg)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        total = torch.zeros((), dtype=torch.float64, device=self.device)
        tokens = 0
        for i, (x, y, mask) in enumerate(batches):
            x, y, mask = (t.to(self.device, non_blocking=True) for t in (x, y, mask))
            tokens += x.numel()
            with self._sync_context(i == accum - 1), runtime.sdp_context(self.cfg["sdp_kernel"], self.device), \
                    runtime.autocast_context(self.device, self.dtype, self.use_amp):
                _, loss_sum = self.forward(x, y, mask, reduction="sum")
            self.scaler.scale(loss_sum / denom).backward()
            total += loss_sum.detach().double()
        self.scaler.unscale_(self.optimizer)
        max_norm = float(self.cfg["grad_clip"]) if self.cfg["grad_clip"] else math.inf
        params = [p for p in self.model.parameters() if p.requires_grad]
        grad_norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        if torch.is_tensor(count):
            loss = self._all_reduce(total) / count.double().clamp(min=1.0)
        else:
            loss = total / max(count, 1.0)
        gn = grad_norm.full_tensor() if hasattr(grad_norm, "full_tensor") else grad_norm
        return loss, gn.detach(), tokens

    @torch.no_grad()
    def evaluate(self) -> float | None:
        if self.val_loader is None:
            return None
        self.val_loader.load_state_dict(copy.deepcopy(self.val_start))  # the same batches every time
        self.model.eval()
        totals = torch.zeros(2, dtype=torch.float64, device=self.device)
        for _ in range(int(self.cfg["eval_iters"])):
            x, y, mask = (t.to(self.device) for t in self.val_loader.next_batch())
            with runtime.autocast_context(self.device, self.dtype, self.use_amp):
                _, loss_sum = self.wrapped(x, y, mask, reduction="sum")
            totals += torch.stack([loss_sum.double(), mask.sum().double()])
        self.model.train()
        totals = self._all_reduce(totals)
        return float(totals[0] / totals[1].clamp(min=1.0))

    # -- checkpoints ----------------------------------------------------------------------------------
    def _payload(self) -> dict:
        loader_states = _gather(self.train_loader.state_dict(), self.ddp)
        rngs = _gather(rng_state(), self.ddp)
        model_state, optim_state = self._model_state(), self._optimizer_state()
        payload = {
            "format": FORMAT, "version": VERSION,
            "model": model_state, "model_config": self.model_cfg.to_dict(), "train_config": dict(self.cfg),
            "step": self.step, "tokenizer_json": self.tokenizer_json, "tokenizer_hash": self.tokenizer_hash,
            "optimizer": optim_state, "scaler": self.scaler.state_dict(),
            "lr": runtime.lr_at(max(self.step - 1, 0), self.cfg), "best_val_loss": self.best_val,
            "loader_states": loader_states, "rng": rngs, "world_size": self.ddp.world_size,
        }
        if lora_modules(self.model):
            payload["lora_config"] = vars(self.model.lora_config).copy()
            payload["base_hash"] = self.model.lora_base_hash
        else:
            payload["base_hash"] = base_hash(model_state) if self.ddp.is_main else None
        return payload

    def check_finite(self, losses: torch.Tensor) -> None:
        """Raise TrainingDiverged when a loss since the last check, or any weight, is NaN or infinite.

        Called before every evaluation and save, so no checkpoint ever holds a NaN or inf weight and a
        diverged run never replaces the checkpoints written before it. One host sync per call (not per
        step); every rank reaches the same verdict.
        """
        bad = (~torch.isfinite(losses)).any().float()
        for p in self.model.parameters():
            local = p.detach()
            local = local.to_local() if hasattr(local, "to_local") else local  # FSDP: this rank's shard
            bad = torch.maximum(bad, (~torch.isfinite(local)).any().float())
        if self.ddp.enabled:
            dist.all_reduce(bad, op=dist.ReduceOp.MAX)
        if bad.item():
            kept = self.cfg["save_checkpoint_to"]
            raise TrainingDiverged(
                f"training diverged by step {self.step}: the loss or the weights are not finite (NaN or inf); "
                f"stopped without saving them (checkpoints in {kept} are from before). Lower learning_rate "
                f"(now {self.cfg['learning_rate']}) or set grad_clip")

    def save(self, best: bool = False) -> Path | None:
        payload = self._payload()  # every rank takes part in gathering
        if not self.ddp.is_main:
            return None
        if best:
            return self.writer.save_best(payload)
        return self.writer.save_last(payload, self.step)

    # -- the loop -------------------------------------------------------------------------------------
    def train(self) -> dict:
        cfg = self.cfg
        out_dir = Path(cfg["save_checkpoint_to"])
        metrics_path = cfg["metrics_log"] or out_dir / "metrics.jsonl"
        metrics = MetricsLog(metrics_path if self.ddp.is_main else None,
                             out_dir / "tensorboard" if (cfg["tensorboard"] and self.ddp.is_main) else None)
        block = self.model_cfg.block_size
        flops_tok = flops_per_token(self.model_cfg, block)
        peak = peak_flops(self.device, self.dtype if self.use_amp else torch.float32)
        max_iters = int(cfg["max_iters"])
        bar = tqdm(total=max_iters, initial=self.step, disable=not (self.log and cfg["progress"]),
                   desc="train", dynamic_ncols=True, file=sys.stderr)
        self.model.train()
        last_loss = val_loss = None
        last_saved = last_evaluated = -1
        tokens_since, t_since = 0, time.perf_counter()
        tok_per_s = 0.0
        deadline = time.monotonic() + float(cfg["time_limit"]) if cfg["time_limit"] else None
        unchecked = torch.zeros((), dtype=torch.float64, device=self.device)  # NaN/inf sticks until checked
        while self.step < max_iters:
            loss_t, grad_norm_t, tokens = self.train_step()
            last_loss = loss_t
            unchecked = unchecked + loss_t * 0  # stays 0 while finite, becomes NaN once a loss is not
            tokens_since += tokens * self.ddp.world_size
            bar.update(1)
            if self.step % int(cfg["log_interval"]) == 0 or self.step == max_iters:
                if self.device.type == "cuda":
                    torch.cuda.synchronize()
                loss, grad_norm = float(loss_t), float(grad_norm_t)
                dt = time.perf_counter() - t_since
                tok_per_s = tokens_since / max(dt, 1e-9)
                record = {"step": self.step, "split": "train", "loss": loss,
                          "lr": runtime.lr_at(self.step - 1, cfg), "grad_norm": grad_norm,
                          "tokens_per_s": tok_per_s, "flops_per_s": tok_per_s * flops_tok}
                if peak:
                    record["mfu"] = tok_per_s * flops_tok / (peak * self.ddp.world_size)
                if self.ddp.is_main:
                    metrics.write(record)
                bar.set_postfix(loss=f"{loss:.4f}", tok_s=f"{tok_per_s:,.0f}")
                tokens_since, t_since = 0, time.perf_counter()
            if self.step == max_iters or any(self.step % int(cfg[k]) == 0 for k in
                                             ("log_interval", "eval_interval", "save_interval")):
                self.check_finite(unchecked)  # before anything is evaluated or saved at this step
            if self.step % int(cfg["eval_interval"]) == 0 or self.step == max_iters:
                val_loss = self.evaluate()
                last_evaluated = self.step
                if val_loss is not None and not math.isfinite(val_loss):
                    self.check_finite(torch.tensor(val_loss))
                if val_loss is not None:
                    if self.ddp.is_main:
                        metrics.write({"step": self.step, "split": "val", "loss": val_loss})
                    if self.log:
                        bar.write(f"step {self.step}: train loss {float(loss_t):.4f}, val loss {val_loss:.4f}",
                                  file=sys.stderr)
                    if val_loss < self.best_val:
                        self.best_val = val_loss
                        if cfg["save_best"]:
                            self.save(best=True)
            if self.step % int(cfg["save_interval"]) == 0:
                self.save()
                last_saved = self.step
            if int(cfg["sample_interval"]) and self.step % int(cfg["sample_interval"]) == 0:
                self._print_sample(bar)
            if deadline is not None and self._time_is_up(deadline):
                if self.log:
                    bar.write(f"time limit of {cfg['time_limit']} s reached at step {self.step}", file=sys.stderr)
                break
        bar.close()
        self.check_finite(unchecked)
        if last_evaluated != self.step:  # stopped by the time limit between evaluations
            val_loss = self.evaluate()
            if val_loss is not None and self.ddp.is_main:
                metrics.write({"step": self.step, "split": "val", "loss": val_loss})
        if last_saved != self.step:
            self.save()
        ckpt_path = out_dir / "last.pt"
        adapter = None
        if lora_modules(self.model) and self.ddp.is_main:
            adapter = save_lora(self.model, out_dir / "lora.pt")
        metrics.close()
        return {"step": self.step, "train_loss": None if last_loss is None else float(last_loss), "val_loss": val_loss,
                "best_val_loss": self.best_val if self.best_val < math.inf else None,
                "tokens_per_s": tok_per_s, "checkpoint": str(ckpt_path), "lora": str(adapter) if adapter else None,
                "metrics_log": str(metrics_path), "model": self.model, "tokenizer": self.tokenizer}

    def _time_is_up(self, deadline: float) -> bool:
        """All ranks stop at the same step: rank 0's clock decides.

        A single process reads its clock only: a device tensor read back every step would make the host
        wait for the GPU after each step, leaving the GPU idle while the next step is launched.
        """
        if not self.ddp.enabled:
            return time.monotonic() >= deadline
        up = torch.tensor(float(time.monotonic() >= deadline), device=self.device)
        dist.broadcast(up, src=0)
        return bool(up.item())

    def _print_sample(self, bar) -> None:
        if not (self.log and self.tokenizer is not None) or (self.cfg["fsdp"] and self.ddp.enabled):
            return
        prompt = self.cfg["sample_prompt"] or ""
        ids = self.tokenizer.encode(prompt) if prompt else [self.tokenizer.token_to_id(BOS) or 0]
        self.model.eval()
        out = list(self.model.generate(ids, int(self.cfg["sample_tokens"]), temperature=0.8, top_k=40,
                                       seed=self.step, eos_id=self.tokenizer.token_to_id(EOS)))
        self.model.train()
        bar.write(f"sample @ {self.step}: {prompt}{self.tokenizer.decode(out)}", file=sys.stderr)
