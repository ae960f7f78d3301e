"""Strict config sections: an unknown key is an error that names the closest known one.

Every section of every config (the run config, the experiment config, and the settings each method keeps
beside its code: ``curriculum.settings``, ``augment.settings``) derives from :class:`StrictModel`, so a
typo never falls back to a default in silence, and :func:`format_validation_error` words every problem
the same way for all of them.
"""

from __future__ import annotations

import difflib
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError


class StrictModel(BaseModel):
    """A config section that refuses keys it does not declare."""

    model_config = ConfigDict(extra="forbid")


def closest(word: str, choices: list[str] | tuple[str, ...], cutoff: float = 0.6) -> str | None:
    """The known spelling nearest to ``word``, or None when nothing is near."""
    found = difflib.get_close_matches(word, list(choices), n=1, cutoff=cutoff)
    return found[0] if found else None


def did_you_mean(word: str, choices: list[str] | tuple[str, ...], cutoff: float = 0.6) -> str:
    """``"; did you mean 'x'?"`` for the closest choice, or an empty string."""
    near = closest(word, choices, cutoff)
    return f"; did you mean {near!r}?" if near and near != word else ""


def _fields_at(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The field names of the section that ``loc`` (a validation error's location) points into."""
    for part in loc[:-1]:
        field = model.model_fields.get(str(part))
        ann = getattr(field, "annotation", None)
        sub = next(
            (
                a
                for a in (ann, *getattr(ann, "__args__", ()))
                if isinstance(a, type) and issubclass(a, BaseModel)
            ),
            None,
        )
        if sub is None:
            return []
        model = sub
    return list(model.model_fields)


def format_validation_error(e: ValidationError, where: str, model: type[BaseModel]) -> str:
    """Every problem of a validation error as ``where: section.key: message``, with the closest known key
    for an unknown one (a typo must not read as a missing feature)."""
    lines = []
    for err in e.errors():
        loc = tuple(err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "not a known key" + did_you_mean(str(loc[-1]), _fields_at(model, loc))
        lines.append(f"{where}: {'.'.join(str(x) for x in loc) or '(top level)'}: {msg}")
    return "; ".join(lines)
