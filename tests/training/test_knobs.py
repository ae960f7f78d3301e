"""Each knob is declared once, where its code lives, with one default: the config schema is read against
the owners' lists and the code's own defaults."""

from __future__ import annotations

import inspect
import typing
from pathlib import Path

from anatomy_r1.augment.distractors import DISTRACTOR_MODES
from anatomy_r1.augment.settings import DIFFICULTY_RULES, PLACEMENTS, GDQASettings
from anatomy_r1.augment.variants import DEFAULT_KINDS, KINDS
from anatomy_r1.curriculum import pacing
from anatomy_r1.curriculum.scoring import MODES
from anatomy_r1.curriculum.settings import CurriculumSettings
from anatomy_r1.curriculum.similarity import DEFAULT_BACKEND
from anatomy_r1.strict import StrictModel
from anatomy_r1.training.config import TrainConfig

SRC = Path(__file__).resolve().parents[2] / "src" / "anatomy_r1"


def _literal(model: type, field: str) -> tuple[str, ...]:
    ann = model.model_fields[field].annotation
    if typing.get_origin(ann) is list:
        (ann,) = typing.get_args(ann)
    return typing.get_args(ann)


def test_the_run_config_includes_the_methods_own_sections() -> None:
    assert TrainConfig.model_fields["curriculum"].annotation is CurriculumSettings
    assert TrainConfig.model_fields["gdqa"].annotation is GDQASettings
    assert CurriculumSettings.__module__ == "anatomy_r1.curriculum.settings"
    assert GDQASettings.__module__ == "anatomy_r1.augment.settings"


def test_choices_come_from_the_modules_that_own_them() -> None:
    assert _literal(CurriculumSettings, "pacing") == pacing.PACINGS
    assert _literal(CurriculumSettings, "window") == pacing.WINDOWS
    assert _literal(CurriculumSettings, "mode") == MODES
    assert _literal(GDQASettings, "kinds") == KINDS
    assert _literal(GDQASettings, "difficulty") == DIFFICULTY_RULES
    assert _literal(GDQASettings, "placement") == PLACEMENTS
    assert _literal(GDQASettings, "distractors") == DISTRACTOR_MODES


def test_one_default_per_value() -> None:
    c = CurriculumSettings()
    assert (c.pacing, c.start_fraction, c.ramp_fraction, c.stages, c.backend) == (
        pacing.DEFAULT_PACING,
        pacing.DEFAULT_START,
        pacing.DEFAULT_RAMP_FRACTION,
        pacing.DEFAULT_STAGES,
        DEFAULT_BACKEND,
    )
    assert GDQASettings().kinds == list(DEFAULT_KINDS)
    from anatomy_r1.curriculum.sampler import CurriculumRepeatSampler

    # The code that runs a knob takes its default from the same constant, so the sampler built without a
    # config and the one a config builds agree.
    sig = inspect.signature(CurriculumRepeatSampler.__init__).parameters
    assert sig["pacing"].default == pacing.DEFAULT_PACING
    assert sig["start"].default == pacing.DEFAULT_START
    assert sig["ramp_fraction"].default == pacing.DEFAULT_RAMP_FRACTION
    assert sig["stages"].default == pacing.DEFAULT_STAGES
    for fn in (pacing.linear, pacing.root, pacing.get_pacing):
        params = inspect.signature(fn).parameters
        assert params["ramp_fraction"].default == pacing.DEFAULT_RAMP_FRACTION
        if "start" in params:
            assert params["start"].default == pacing.DEFAULT_START
    assert inspect.signature(pacing.step).parameters["stages"].default == pacing.DEFAULT_STAGES


def test_no_section_or_choice_list_is_declared_twice() -> None:
    """Every strict section is defined in one module, and the pacing names are spelled out only in
    their owner."""
    sections: dict[str, str] = {}

    def walk(model: type) -> None:
        for field in model.model_fields.values():
            ann = field.annotation
            for sub in (ann, *typing.get_args(ann)):
                if isinstance(sub, type) and issubclass(sub, StrictModel):
                    assert sections.setdefault(sub.__name__, sub.__module__) == sub.__module__
                    walk(sub)

    walk(TrainConfig)
    assert {"CurriculumSettings", "GDQASettings", "ModelConfig", "DataConfig"} <= set(sections)
    spelled = [
        p.relative_to(SRC).as_posix()
        for p in SRC.rglob("*.py")
        if '"linear", "root", "step"' in p.read_text(encoding="utf-8")
        or '"linear", "step", "root"' in p.read_text(encoding="utf-8")
    ]
    assert spelled == ["curriculum/pacing.py"]
