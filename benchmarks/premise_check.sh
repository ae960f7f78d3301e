#!/usr/bin/env bash
# Does the embedded benchmark hold ASCL's premise (similar answer choices are harder)?
#
# Trains plain GRPO (no ASCL, no GDQA) on the demo's base model and data for 500 steps (the step count the
# premise numbers in docs/results.md were measured with; the demo itself runs 400), then probes the trained model on
# the demo's 500 held-out questions: each is re-posed with its least and most similar distractors under
# matrix:prior (the similarity the synthetic world follows), and S(q) is set against per-question Avg@5.
#
#   bash benchmarks/premise_check.sh [OUT]          # OUT defaults to runs/premise
#
# Writes OUT/plain (the demo folder: report/, eval/, probe/) and OUT/probe (probe.json, probe.md, plots).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/premise}
BIN=${BIN:-.venv/bin}
"$BIN/anatomy-r1" demo --out "$OUT/plain" --force \
  --set curriculum.enabled=false --set gdqa.enabled=false --set grpo.max_steps=500 \
  --set logging.progress_bar=false
"$BIN/anatomy-r1" probe --model "$OUT/plain/run/final" --data "$OUT/plain/data/test.jsonl" --out "$OUT/probe" \
  --backend matrix:prior \
  --vocabulary abdominal_wall_cavity,cystic_artery,cystic_duct,cystic_plate,gallbladder,gut,liver,omentum \
  --k 5 --template compact_text --max-new-tokens 24
