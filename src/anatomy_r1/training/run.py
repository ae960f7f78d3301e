"""What every training run does around its trainer: find the resume point, refuse to mix runs, save the
config, read the data."""

from __future__ import annotations

from pathlib import Path

from anatomy_r1.data.images import default_image_root
from anatomy_r1.data.schema import Record
from anatomy_r1.errors import ConfigError
from anatomy_r1.training.config import TrainConfig, dump_config
from anatomy_r1.training.dataset import load_records


def last_checkpoint(output_dir: str | Path) -> str | None:
    """Newest *complete* checkpoint: a run killed mid-save leaves a folder without trainer_state.json."""
    d = Path(output_dir)
    if not d.is_dir():
        return None
    done = [
        p
        for p in d.glob("checkpoint-*")
        if p.name[len("checkpoint-") :].isdigit() and (p / "trainer_state.json").is_file()
    ]
    return str(max(done, key=lambda p: int(p.name[len("checkpoint-") :]))) if done else None


def prepare_run(cfg: TrainConfig, resume: bool) -> tuple[Path, str | None, list[Record], str]:
    """Checks shared by every trainer: data set, resume point, no silent overwrite; saves the config."""
    if not cfg.data.train:
        raise ConfigError("data.train is not set")
    out = Path(cfg.output_dir)
    ckpt = last_checkpoint(out) if resume else None
    if resume and ckpt is None:
        raise ConfigError(f"--resume: no checkpoint under {out}")
    if not resume and out.exists() and any(out.glob("checkpoint-*")):
        raise ConfigError(f"{out} already holds checkpoints; pass --resume or choose another output_dir")
    out.mkdir(parents=True, exist_ok=True)
    dump_config(cfg, out / "config.yaml")
    records = load_records(cfg.data.train, cfg.data.limit)
    return out, ckpt, records, default_image_root(cfg.data.train, cfg.data.image_root)
