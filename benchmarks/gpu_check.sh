#!/usr/bin/env bash
# One-command GPU check of Anatomy-R1 on a random-weight Qwen2.5-VL-3B (no download): 20 GRPO steps with
# ASCL+GDQA in bf16 with and without LoRA, 20 plain TRL GRPO steps, and eval throughput. Writes
# OUT/gpu_check.json and OUT/gpu_check.md. Meant to finish in under 8 minutes on one H100/H200.
#
#   benchmarks/gpu_check.sh [--out DIR] [--steps N] [--keep-model]
#   benchmarks/gpu_check.sh --dry-run --out /tmp/gpu_check   # CPU, tiny architecture, 2 steps, fp32
#
# PYTHON selects the interpreter (default: python on PATH, with anatomy-r1 installed).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PYTHON="${PYTHON:-python}"
exec "$PYTHON" "$HERE/gpu_check.py" "$@"
