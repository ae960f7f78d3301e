"""The fields of ``trl.GRPOConfig`` and ``peft.LoraConfig``, read from the installed sources without importing
them.

The ``grpo:`` section of a run config is handed to ``trl.GRPOConfig`` as it is, so its keys are exactly
that dataclass's fields and its defaults are TRL's. A misspelled key must fail when the YAML is read, not
minutes later after torch, transformers and TRL have loaded, so the field list comes from the source of
the installed TRL (and of the transformers ``TrainingArguments`` it extends): each class body's annotated
assignments, walked up the base classes. Defaults are read the same way where they are literals, for
the few settings the planner needs before anything heavy is imported. ``model.lora`` is checked against
``peft.LoraConfig`` the same way, for the same reason.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
from pathlib import Path
from typing import Any

from anatomy_r1.errors import ConfigError

NO_DEFAULT: Any = object()
"""Stands for a field whose default is not a literal (a factory or an expression)."""

# Where each class of GRPOConfig's ancestry is defined, relative to its package folder.
_CLASSES: tuple[tuple[str, str, str], ...] = (
    ("trl", "trainer/grpo_config.py", "GRPOConfig"),
    ("trl", "trainer/base_config.py", "_BaseConfig"),
    ("transformers", "training_args.py", "TrainingArguments"),
)


# ... and of peft's LoraConfig.
_LORA_CLASSES: tuple[tuple[str, str, str], ...] = (
    ("peft", "tuners/lora/config.py", "LoraConfig"),
    ("peft", "config.py", "PeftConfig"),
    ("peft", "config.py", "PeftConfigMixin"),
)


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"the {name} package is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


def _literal_default(value: ast.expr | None) -> Any:
    if value is None:
        return NO_DEFAULT
    if isinstance(value, ast.Call):  # dataclasses.field(default=..., metadata=...)
        for kw in value.keywords:
            if kw.arg == "default":
                value = kw.value
                break
        else:
            return NO_DEFAULT
    try:
        return ast.literal_eval(value)
    except ValueError:
        return NO_DEFAULT


def _class_fields(path: Path, name: str) -> dict[str, Any]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == name:
            return {
                st.target.id: _literal_default(st.value)
                for st in node.body
                if isinstance(st, ast.AnnAssign) and isinstance(st.target, ast.Name)
            }
    raise ConfigError(f"{path}: no class {name} (an unsupported TRL or transformers version?)")


def _ancestry_fields(classes: tuple[tuple[str, str, str], ...]) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for package, rel, cls in classes:
        for key, default in _class_fields(_package_dir(package) / rel, cls).items():
            fields.setdefault(key, default)  # the subclass's redefinition wins
    return fields


@functools.cache
def grpo_config_fields() -> dict[str, Any]:
    """Every field of ``trl.GRPOConfig`` mapped to its literal default (or :data:`NO_DEFAULT`)."""
    return _ancestry_fields(_CLASSES)


@functools.cache
def lora_config_fields() -> dict[str, Any]:
    """Every field of ``peft.LoraConfig`` mapped to its literal default (or :data:`NO_DEFAULT`)."""
    return _ancestry_fields(_LORA_CLASSES)
