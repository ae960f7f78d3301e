"""GRPO reward functions in TRL's reward-function contract.

TRL calls each function as ``f(prompts=..., completions=..., completion_ids=..., <dataset columns>,
trainer_state=..., log_metric=..., ...)`` with one list entry per sampled completion, and expects one
float per completion back. The functions here take the columns they need by name, swallow everything
else through ``**kwargs``, and never raise: a reward that throws on one odd completion would abort a
training run hours in, while a 0.0 only makes that completion lose its group comparison.

* ``accuracy_reward``: 1.0 when the single answer tag names the correct option under the rules in
  ``anatomy_r1.task.answers`` (shared with evaluation), else 0.0. Those rules read the letter and the
  option text alike, so one reward serves every template's answer form, including ``source``, whose form
  differs per item: a row needs no column saying which form its prompt asked for.
* ``format_reward``: 1.0 when the completion is exactly ``<think>...</think>`` then
  ``<answer>...</answer>``, with only whitespace around and between, and one of each tag. Either block may
  be empty (matching the released Anatomy-R1 format regex); an empty answer is caught by accuracy.
* ``format_reward_no_think``: the same for answer-only templates: exactly one ``<answer>...</answer>``
  and nothing else.
* ``valid_choice_reward``: 1.0 when the answer names exactly one offered option, right or wrong (off
  unless ``rewards.valid_choice`` gives it a weight).

All checks are a fixed number of ``str.count`` / ``str.find`` passes, so cost is linear in the completion.
"""

from __future__ import annotations

import logging
import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any

from anatomy_r1.errors import ConfigError
from anatomy_r1.task.answers import (
    CLOSE_ANSWER,
    CLOSE_THINK,
    OPEN_ANSWER,
    OPEN_THINK,
    completion_to_text,
    extract_answer_text,
    extract_choice,
)
from anatomy_r1.task.prompts import uses_think

logger = logging.getLogger(__name__)

RewardFunc = Callable[..., list[float]]

_warned_missing_truth = False


def _as_list(value: Any) -> list[Any] | None:
    if isinstance(value, list):
        return value
    if isinstance(value, tuple):
        return list(value)
    return None


def _column(value: Any, i: int) -> Any:
    """Entry ``i`` of a per-sample column, or ``None`` when the column is absent or too short."""
    seq = _as_list(value)
    if seq is None or i >= len(seq):
        return None
    return seq[i]


def _warn_missing_truth() -> None:
    """Log once: a missing ground-truth column silently zeroes every accuracy reward otherwise."""
    global _warned_missing_truth
    if not _warned_missing_truth:
        _warned_missing_truth = True
        logger.warning(
            "accuracy_reward: a sample has no usable 'options'/'answer_index' columns; it scores 0.0. "
            "Check that the training dataset keeps these columns."
        )


def _accuracy_one(completion: Any, options: Any, answer_index: Any) -> tuple[float, bool]:
    """(reward, invalid) for one completion; invalid means no single option could be read."""
    try:
        if (
            not isinstance(options, list | tuple)
            or isinstance(answer_index, bool)
            or not isinstance(answer_index, numbers.Integral)
        ):
            _warn_missing_truth()
            return 0.0, extract_answer_text(completion) is None
        choice = extract_choice(completion, list(options))
        return (1.0 if choice is not None and choice == int(answer_index) else 0.0), choice is None
    except Exception:  # pragma: no cover - defensive: extraction is written not to raise
        return 0.0, True


def accuracy_reward(
    completions: Any = None,
    answer_index: Any = None,
    options: Any = None,
    **kwargs: Any,
) -> list[float]:
    """1.0 per completion whose single answer tag names ``options[answer_index]``, else 0.0.

    Also reports the batch's invalid-answer rate through TRL's ``log_metric`` hook when one is given.
    """
    comps = _as_list(completions)
    if comps is None:
        return []
    rewards: list[float] = []
    invalid = 0
    for i, completion in enumerate(comps):
        reward, bad = _accuracy_one(completion, _column(options, i), _column(answer_index, i))
        rewards.append(reward)
        invalid += bad
    log_metric = kwargs.get("log_metric")
    if callable(log_metric) and rewards:
        try:
            log_metric("invalid_answer_rate", invalid / len(rewards))
        except Exception:  # pragma: no cover - logging must not cost a training step
            logger.debug("log_metric failed", exc_info=True)
    return rewards


def _only_space(text: str, start: int, end: int) -> bool:
    return not text[start:end].strip()


def is_think_answer_format(text: Any) -> bool:
    """``<think>...</think>`` then ``<answer>...</answer>``, whitespace only outside, one of each tag."""
    if not isinstance(text, str):
        return False
    if any(text.count(tag) != 1 for tag in (OPEN_THINK, CLOSE_THINK, OPEN_ANSWER, CLOSE_ANSWER)):
        return False
    ot, ct = text.find(OPEN_THINK), text.find(CLOSE_THINK)
    oa, ca = text.find(OPEN_ANSWER), text.find(CLOSE_ANSWER)
    if not ot < ct < oa < ca:
        return False
    return (
        _only_space(text, 0, ot)
        and _only_space(text, ct + len(CLOSE_THINK), oa)
        and _only_space(text, ca + len(CLOSE_ANSWER), len(text))
    )


def is_answer_only_format(text: Any) -> bool:
    """Exactly one ``<answer>...</answer>``, no think tags, whitespace only outside it."""
    if not isinstance(text, str):
        return False
    if text.count(OPEN_ANSWER) != 1 or text.count(CLOSE_ANSWER) != 1:
        return False
    if OPEN_THINK in text or CLOSE_THINK in text:
        return False
    oa, ca = text.find(OPEN_ANSWER), text.find(CLOSE_ANSWER)
    if not oa < ca:
        return False
    return _only_space(text, 0, oa) and _only_space(text, ca + len(CLOSE_ANSWER), len(text))


def _format_scores(completions: Any, check: Callable[[Any], bool]) -> list[float]:
    comps = _as_list(completions)
    if comps is None:
        return []
    out: list[float] = []
    for completion in comps:
        try:
            out.append(1.0 if check(completion_to_text(completion)) else 0.0)
        except Exception:  # pragma: no cover - defensive: the checks are written not to raise
            out.append(0.0)
    return out


def format_reward(completions: Any = None, **kwargs: Any) -> list[float]:
    """1.0 per completion that is exactly a think block followed by an answer block, else 0.0."""
    return _format_scores(completions, is_think_answer_format)


def format_reward_no_think(completions: Any = None, **kwargs: Any) -> list[float]:
    """1.0 per completion that is exactly one answer block (for answer-only templates), else 0.0."""
    return _format_scores(completions, is_answer_only_format)


def valid_choice_reward(completions: Any = None, options: Any = None, **kwargs: Any) -> list[float]:
    """1.0 per completion whose answer names exactly one of the *offered* options, right or wrong.

    The accuracy reward scores a wrong option and a name that is not on offer alike (0.0), so a policy can
    drift into answering with a class it has in mind whatever the choices are; this reward makes choosing
    among the options part of the answer's format, as it is for a multiple-choice exam.
    """
    comps = _as_list(completions)
    if comps is None:
        return []
    out: list[float] = []
    for i, completion in enumerate(comps):
        opts = _column(options, i)
        try:
            ok = isinstance(opts, list | tuple) and extract_choice(completion, list(opts)) is not None
        except Exception:  # pragma: no cover - defensive: extraction is written not to raise
            ok = False
        out.append(1.0 if ok else 0.0)
    return out


#: Reward names accepted in a config's reward spec. ``format`` resolves to the think or answer-only
#: variant according to the prompt template, so one config works for every template.
REWARD_NAMES: tuple[str, ...] = ("accuracy", "format", "format_no_think", "valid_choice")


def build_reward_funcs(spec: dict[str, float], template: str) -> tuple[list[RewardFunc], list[float]]:
    """Reward functions and weights for TRL's ``reward_funcs`` and ``GRPOConfig.reward_weights``.

    ``spec`` maps reward names (``accuracy``, ``format``, ``format_no_think``; a ``_reward`` suffix is
    tolerated) to finite weights, e.g. ``{"accuracy": 1.0, "format": 1.0}``. A zero weight keeps the reward
    in the logs without letting it shape the advantage.
    """
    if not isinstance(spec, dict) or not spec:
        raise ConfigError("rewards: give at least one reward name with a weight, e.g. {accuracy: 1.0}")
    think = uses_think(template)
    funcs: list[RewardFunc] = []
    weights: list[float] = []
    seen: set[str] = set()
    for raw_name, weight in spec.items():
        name = str(raw_name).removesuffix("_reward")
        if name not in REWARD_NAMES:
            raise ConfigError(f"rewards: unknown reward {raw_name!r}; choose from {', '.join(REWARD_NAMES)}")
        if isinstance(weight, bool) or not isinstance(weight, int | float) or not math.isfinite(weight):
            raise ConfigError(f"rewards: weight for {raw_name!r} must be a finite number, got {weight!r}")
        func: RewardFunc
        if name == "accuracy":
            func = accuracy_reward
        elif name == "valid_choice":
            func = valid_choice_reward
        elif name == "format_no_think" or not think:
            func = format_reward_no_think
        else:
            func = format_reward
        if func.__name__ in seen:
            raise ConfigError(f"rewards: {raw_name!r} repeats the reward {func.__name__}")
        seen.add(func.__name__)
        funcs.append(func)
        weights.append(float(weight))
    return funcs, weights


def reward_names(funcs: Sequence[RewardFunc]) -> list[str]:
    """Names TRL logs the rewards under (``rewards/<name>/mean``)."""
    return [f.__name__ for f in funcs]
