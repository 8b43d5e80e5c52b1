#!/usr/bin/env bash
# Quantization drift on the N56 shape (python/nano/configs/model_56m.json) for docs/evaluation.md:
# random weights (no trained N56 is shipped), exported as f32, q8_0 and q4_0, compared with
# `nano.eval kl` on the first 2,000 characters of pretrain_psycho.txt. Two initialisations:
#   default: nano.model's own (std 0.02): near-uniform next-token distributions, as at step 0 of training;
#   sharp:   matrices of std 1/sqrt(fan-in) and embeddings of std 0.1, whose logits spread like a trained
#            model's (several nats between likely and unlikely tokens), so quantization error shows.
#
#   scripts/n56_kl.sh [OUT]          (OUT defaults to runs/n56; NANO_SHARED_DATA overrides ../shared/data)
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${NANO_SHARED_DATA:-../shared/data}
OUT=${1:-runs/n56}
PY=${PYTHON:-python3}
TEXT="$DATA/pretrain_psycho.txt"
mkdir -p "$OUT"

$PY - "$OUT" "$DATA/tokenizer_16384.json" <<'PYEOF'
import sys

import torch
from nano.export import export_checkpoint
from nano.model import ModelConfig, Transformer
from nano.tokenizer import Tokenizer

out, vocab = sys.argv[1], sys.argv[2]
tokenizer_json = Tokenizer.from_file(vocab).to_json()
for init in ("default", "sharp"):
    torch.manual_seed(0)
    model = Transformer(ModelConfig.from_json("python/nano/configs/model_56m.json"))
    if init == "sharp":
        with torch.no_grad():
            for name, p in model.named_parameters():
                if p.dim() == 2:
                    p.normal_(0.0, p.shape[1] ** -0.5)
            model.tok_embeddings.weight.normal_(0.0, 0.1)
    ckpt = {"model": model.state_dict(), "model_config": model.config.to_dict(), "tokenizer_json": tokenizer_json}
    for dtype in ("f32", "q8_0", "q4_0"):
        export_checkpoint(ckpt, f"{out}/n56_{init}_{dtype}.bin", dtype)
PYEOF

for init in default sharp; do
    for q in q8_0 q4_0; do
        echo "== $init: $q vs f32"
        $PY -m nano.eval kl "$OUT/n56_${init}_f32.bin" "$OUT/n56_${init}_${q}.bin" "$TEXT" --max-chars 2000 \
            --no-progress --json "$OUT/kl_${init}_${q}.json"
    done
done
