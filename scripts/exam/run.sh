#!/usr/bin/env bash
# The exam-bank figures of docs/evaluation.md: a small model trained on sft_amateur_radio.jsonl (which
# holds the exam's questions, paraphrased, with their correct answers) and the same shape untrained, both
# scored by `nano.eval mc` on exam_amateur_radio.txt (figures and timing in docs/evaluation.md).
#
#   scripts/exam/run.sh [OUT]        (OUT defaults to runs/exam; NANO_SHARED_DATA overrides ../shared/data)
set -euo pipefail
cd "$(dirname "$0")/../.."
DATA=${NANO_SHARED_DATA:-../shared/data}
OUT=${1:-runs/exam}
PY=${PYTHON:-python3}
EXAM="$DATA/exam_amateur_radio.txt"
mkdir -p "$OUT"
rm -rf "$OUT/sft" "$OUT/train"

# a vocabulary of the two files' text (1,500 characters and 500 multi-character tokens): a 2,048-row
# head instead of the reference vocabulary's 16,384 makes each training step several times cheaper
$PY -m nano.tokenizer build "$DATA/sft_amateur_radio.jsonl" "$EXAM" --vocab-size 2048 --out "$OUT/vocab.json"
$PY -m nano.data sft "$DATA/sft_amateur_radio.jsonl" -o "$OUT/sft" --tokenizer "$OUT/vocab.json" \
    --block-size 128 --pack --val-fraction 0.02 --no-progress

# SFT from random initialisation (no pretraining): loss on the answer tokens only, 300 steps of 16 x 128
$PY -m nano.train -m scripts/exam/model.json -t scripts/exam/train.json \
    --set "train_data=$OUT/sft" --set "save_checkpoint_to=$OUT/train" --set progress=false
$PY -m nano.export "$OUT/trained.bin" --checkpoint "$OUT/train/last.pt"

# the same shape with its random initial weights (seed 0)
$PY - "$OUT" <<'PYEOF'
import sys

import torch
from nano.export import export_checkpoint
from nano.model import ModelConfig, Transformer
from nano.tokenizer import Tokenizer

out = sys.argv[1]
torch.manual_seed(0)
model = Transformer(ModelConfig.from_json("scripts/exam/model.json"))
export_checkpoint({"model": model.state_dict(), "model_config": model.config.to_dict(),
                   "tokenizer_json": Tokenizer.from_file(f"{out}/vocab.json").to_json()}, f"{out}/untrained.bin")
PYEOF

for model in trained untrained; do
    for mode in instruct plain; do
        flag=(); [ "$mode" = instruct ] && flag=(--instruct)
        echo "== $model, $mode, 0-shot"
        $PY -m nano.eval mc "$OUT/$model.bin" "$EXAM" "${flag[@]}" --no-progress --json "$OUT/mc_${model}_${mode}.json"
    done
done
echo "== trained, plain, 3-shot"
$PY -m nano.eval mc "$OUT/trained.bin" "$EXAM" --shots 3 --no-progress --json "$OUT/mc_trained_plain_3shot.json"
