"""Peak memory of the training data path against the number of distinct frames it decodes.

Writes ``--frames`` distinct 854x480 PNG frames (CholecT45's size) to a temporary folder and, for each
case, starts a fresh Python process that builds the real GRPO dataset (``build_rl_dataset``) over the same
number of questions (``--questions``, spread over 50 or over all the frames) and fetches it the way TRL's
trainer does: a ``DataLoader`` over TRL's ``RepeatSampler`` (each prompt ``num_generations`` times in a row,
each generation batch ``steps_per_generation`` times), for several passes. Each process reports its own
peak resident set size (``VmHWM``), so one case cannot inherit another's peak.

Cases: the default cache bound (``data.image_cache_mb``) with 50 and with ``--frames`` distinct frames,
and the same with an unbounded cache, which is how the cache behaved before it was bounded in bytes (it
kept up to 50,000 frames). Target: with the default bound, the many-frame peak is at most 1.3x the
50-frame peak.

    python benchmarks/image_memory.py                 # 500 frames, 1000 questions, 3 passes
    python benchmarks/image_memory.py --frames 1000   # more frames; the bounded peak should not move

The last line is ``ratio X.XX``: the many-frame peak over the 50-frame peak at the default bound.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

WIDTH, HEIGHT = 854, 480
FEW = 50
UNBOUNDED_MB = 1 << 20  # 1 TiB: nothing is ever evicted
TEMPLATE = "compact_text"


def write_frames(folder: Path, n: int) -> list[str]:
    """``n`` distinct frames (a per-frame gradient and stripes; cheap to write, full size to decode)."""
    import numpy as np
    from PIL import Image

    (folder / "frames").mkdir(parents=True, exist_ok=True)
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH]
    names = []
    for i in range(n):
        rgb = np.stack(
            [(x + 3 * i) % 256, (y + 7 * i) % 256, ((x // (1 + i % 17)) ^ (y // 9)) % 256], axis=-1
        ).astype(np.uint8)
        name = f"frames/{i:05d}.png"
        Image.fromarray(rgb).save(folder / name, compress_level=1)
        names.append(name)
    return names


def write_questions(path: Path, frames: list[str], n_questions: int) -> None:
    """``n_questions`` records cycling over ``frames``: every case does the same work on other frames."""
    from anatomy_r1.data.io import write_records
    from anatomy_r1.data.schema import make_record

    options = ["Liver", "Gallbladder", "Cystic duct", "Abdominal wall"]
    write_records(
        path,
        (
            make_record(
                id=f"q{i}",
                images=[frames[i % len(frames)]],
                question="What anatomy is at the top-mid of the frame ?",
                options=options,
                answer_index=i % 4,
                source="benchmark",
                meta={"anatomy_class": "liver"},
            )
            for i in range(n_questions)
        ),
    )


def peak_rss_mb() -> float:
    """This process's own peak RSS (``VmHWM``; ``ru_maxrss`` where /proc is absent)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(data: str, cache_mb: int, passes: int, args: argparse.Namespace) -> None:
    """One case: build the dataset and fetch it as the GRPO trainer's dataloader would."""
    from torch.utils.data import DataLoader
    from trl.trainer.utils import RepeatSampler

    from anatomy_r1.data.io import read_records
    from anatomy_r1.training.dataset import build_rl_dataset

    records = read_records(data)
    ds = build_rl_dataset(records, TEMPLATE, str(Path(data).parent), cache_mb)
    generation_batch = args.per_device_batch * args.steps_per_generation
    sampler = RepeatSampler(
        ds,
        mini_repeat_count=args.num_generations,
        batch_size=generation_batch // args.num_generations,
        repeat_count=args.steps_per_generation,
        shuffle=True,
        seed=0,
    )
    loader = DataLoader(ds, batch_size=generation_batch, sampler=sampler, collate_fn=lambda rows: rows)
    cache = _cache_of(ds)
    t0 = time.perf_counter()
    fetched = 0
    for _ in range(passes):
        for batch in loader:
            fetched += len(batch)
            assert batch[0]["images"][0].size == (WIDTH, HEIGHT)
    print(
        json.dumps(
            {
                "peak_rss_mb": round(peak_rss_mb(), 1),
                "fetched": fetched,
                "decoded": cache.misses,
                "cached_mb": round(cache.nbytes / 2**20, 1),
                "seconds": round(time.perf_counter() - t0, 1),
            }
        )
    )


def _cache_of(ds: Any) -> Any:
    """The ``ImageCache`` inside the dataset's transform, for reporting how many frames were decoded."""
    from anatomy_r1.data.images import ImageCache

    transform = ds._format_kwargs["transform"]
    for cell in transform.__closure__ or ():
        if isinstance(cell.cell_contents, ImageCache):
            return cell.cell_contents
    raise RuntimeError("no ImageCache in the dataset transform")


def run_case(data: Path, cache_mb: int, args: argparse.Namespace) -> dict[str, Any]:
    cmd = [
        sys.executable,
        __file__,
        "--child",
        str(data),
        "--cache-mb",
        str(cache_mb),
        "--passes",
        str(args.passes),
        "--num-generations",
        str(args.num_generations),
        "--per-device-batch",
        str(args.per_device_batch),
        "--steps-per-generation",
        str(args.steps_per_generation),
    ]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=os.environ.copy())
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    from anatomy_r1.data.images import DEFAULT_IMAGE_CACHE_MB

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, default=500, help="distinct frames of the large case (>= 500)")
    p.add_argument("--questions", type=int, default=1000, help="questions in every case")
    p.add_argument("--passes", type=int, default=3, help="epochs over the questions")
    p.add_argument("--cache-mb", type=int, default=DEFAULT_IMAGE_CACHE_MB, help="the bound under test")
    p.add_argument("--num-generations", type=int, default=8)
    p.add_argument("--per-device-batch", type=int, default=8)
    p.add_argument("--steps-per-generation", type=int, default=4)
    p.add_argument("--skip-unbounded", action="store_true", help="only the bounded cases")
    p.add_argument("--child", metavar="DATA", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args.child, args.cache_mb, args.passes, args)
        return

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        frames = write_frames(root, max(args.frames, FEW))
        print(f"wrote {len(frames)} frames of {WIDTH}x{HEIGHT} in {time.perf_counter() - t0:.1f} s")
        files = {}
        for n in (FEW, args.frames):
            files[n] = root / f"questions_{n}.jsonl"
            write_questions(files[n], frames[:n], args.questions)
        bounds = [args.cache_mb] + ([] if args.skip_unbounded else [UNBOUNDED_MB])
        peaks: dict[tuple[int, int], float] = {}
        print(
            f"{args.questions} questions, {args.passes} passes, num_generations {args.num_generations}, "
            f"generation batch {args.per_device_batch * args.steps_per_generation}"
        )
        print(f"{'cache':>10} {'frames':>7} {'peak RSS MB':>12} {'decoded':>8} {'cached MB':>10} {'s':>6}")
        for mb in bounds:
            for n in (FEW, args.frames):
                r = run_case(files[n], mb, args)
                peaks[mb, n] = r["peak_rss_mb"]
                label = "unbounded" if mb == UNBOUNDED_MB else f"{mb} MB"
                print(
                    f"{label:>10} {n:>7} {r['peak_rss_mb']:>12.1f} {r['decoded']:>8} "
                    f"{r['cached_mb']:>10.1f} {r['seconds']:>6.1f}",
                    flush=True,
                )
        if not args.skip_unbounded:
            ub = peaks[UNBOUNDED_MB, args.frames] / peaks[UNBOUNDED_MB, FEW]
            print(f"unbounded ratio {ub:.2f} ({args.frames} frames over {FEW})")
        ratio = peaks[args.cache_mb, args.frames] / peaks[args.cache_mb, FEW]
        verdict = "within" if ratio <= 1.3 else "OVER"
        print(f"target <= 1.30 at {args.cache_mb} MB: {verdict}")
        print(f"ratio {ratio:.2f}")


if __name__ == "__main__":
    main()
