"""Generation throughput (completions/s) and training data-path throughput (items/s) on the tiny model.

* **generation**: ``evaluation.generate.generate_with_model`` sampling k completions per question plus a
  greedy pass, as the experiment runner's evaluation does; completions per second of wall time.
* **data path**: canonical records -> ``build_rl_dataset`` -> fetching items through its transform (chat
  prompt built, frame decoded through the per-process image cache), the path every GRPO batch takes.
  Reported cold (first pass, frames decoded from PNG) and warm (cached frames).

    python benchmarks/throughput.py            # 64 questions, k = 5; 2000 data items
    python benchmarks/throughput.py --quick    # 16 questions, k = 2; 500 data items

Numbers are medians over repeats; run on an idle machine when comparing.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

TEMPLATE = "compact_text"


def _median_time(fn: Any, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--max-new-tokens", type=int, default=24)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    n_q, k, n_items, repeats = (16, 2, 500, 1) if args.quick else (64, 5, 2000, 3)
    warnings.filterwarnings("ignore")
    from transformers.utils import logging as hf_logging

    from anatomy_r1.data.io import read_records
    from anatomy_r1.data.synth import generate_benchmark
    from anatomy_r1.evaluation.generate import generate_with_model
    from anatomy_r1.models.loading import load_model, load_processor
    from anatomy_r1.models.tiny import TinySpec, build_tiny_model
    from anatomy_r1.task.prompts import format_target, render_prompt
    from anatomy_r1.training.dataset import build_rl_dataset

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    with tempfile.TemporaryDirectory(prefix="throughput-") as tmp:
        root = Path(tmp)
        spec = TinySpec()
        data = root / "data"
        generate_benchmark(
            data, seed=5, n_train=n_items, n_val=0, n_test=n_q, n_perception=0, image_size=spec.image_size
        )
        train = read_records(data / "train.jsonl")
        test = read_records(data / "test.jsonl")
        corpus = [render_prompt(r, TEMPLATE) for r in train[:300]]
        corpus += [format_target(r.answer_letter, None, TEMPLATE, r.answer) for r in train[:300]]
        model_dir = build_tiny_model(root / "model", corpus, spec)
        model, processor = load_model(model_dir), load_processor(model_dir)

        def generate() -> None:
            generate_with_model(
                model, processor, test, k=k, greedy=True, template=TEMPLATE,
                max_new_tokens=args.max_new_tokens, batch_size=args.batch_size, image_root=str(data),
            )  # fmt: skip

        generate()  # warm-up
        gen_s = _median_time(generate, repeats)
        n_completions = len(test) * (k + 1)
        print(
            f"generation: {n_completions / gen_s:8.1f} completions/s  ({len(test)} questions x (k={k} "
            f"sampled + greedy), <= {args.max_new_tokens} new tokens, batch {args.batch_size})"
        )

        t0 = time.perf_counter()
        ds = build_rl_dataset(train, TEMPLATE, str(data))
        build_s = time.perf_counter() - t0

        def fetch() -> None:
            for i in range(len(ds)):
                ds[i]

        cold_s = _median_time(fetch, 1)
        warm_s = _median_time(fetch, repeats)
        print(f"dataset build: {len(train) / build_s:8.0f} records/s  ({len(train)} records)")
        print(f"fetch (cold):  {len(ds) / cold_s:8.0f} items/s  (frames decoded from PNG)")
        print(f"fetch (warm):  {len(ds) / warm_s:8.0f} items/s  (frames from the image cache)")


if __name__ == "__main__":
    main()
