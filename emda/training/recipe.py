"""Recipes: several training stages that ``emda adapt`` runs as one command.

A :class:`Recipe` is a list of :class:`Stage` s, each one method with its options and
training settings. A stage whose method has a ``teacher`` option is taught by the model
the stages before it kept. :data:`DEFAULT_RECIPE` is what ``emda adapt`` runs without
``--method``; a TOML file (:func:`load_recipe`) defines another:

.. code-block:: toml

    [recipe]
    name = "align-then-selftrain"

    [[recipe.stage]]
    name = "align"
    method = "ynet"
    share = 0.5                 # of the run's --iterations (or: iterations = 750)

    [[recipe.stage]]
    method = "selftrain"
    opt = { balance = "class" }
    settings = { target_planes = "auto" }

Every choice the default recipe makes reads only the volumes' voxel sizes and the
unlabelled target (docs/recipe.md): ``target_planes = "auto"`` samples the target's
three plane stacks when its voxels are isotropic, and a self-training stage whose
student marks clearly fewer target pixels as mitochondria than its teacher, or than the
untaught stage the rounds started from, is not kept
(:func:`emda.training.recipe_run.judge`).
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emda.errors import EmdaError
from emda.methods.options import option_fields, parse_options
from emda.methods.registry import load_registry
from emda.training.config import TARGET_PLANES, TrainConfig

#: stage settings that are not TrainConfig fields
AUTO_PLANES = "auto"  # target_planes: ortho for an isotropic 3D target, else xy
#: settings a stage may not change: they are the run's, shared by every stage
RUN_SETTINGS = ("batch_size", "patch_size", "seed", "checkpoint_every", "precision")


@dataclass(frozen=True)
class Stage:
    """One training run of a recipe. ``share``: its iterations as a fraction of the
    run's ``--iterations``, unless ``iterations`` gives them; ``options``: the method's
    (as ``--opt``); ``settings``: TrainConfig fields this stage changes (e.g.
    ``target_planes = "auto"``, ``lr``, ``amplitude_mix``)."""

    method: str
    name: str = ""
    share: float = 1.0
    iterations: int | None = None
    options: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)

    def stage_iterations(self, run_iterations: int) -> int:
        return self.iterations or max(1, round(self.share * run_iterations))

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v not in (None, {})}


@dataclass(frozen=True)
class Recipe:
    name: str
    stages: tuple[Stage, ...]
    description: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "stages": [s.to_dict() for s in self.stages],
        }


# Two thirds of --iterations per stage: the three stages together train twice as long as
# one method run. Self-training: pseudo-labels from the teacher's prediction of whole
# target slices, with class-balanced thresholds, so that a teacher less sure of
# mitochondria than of background still teaches mitochondria.
_SELFTRAIN = {"balance": "class"}
DEFAULT_RECIPE = Recipe(
    "default",
    (
        Stage("ynet", "align", share=2 / 3),
        Stage("selftrain", "selftrain-1", 2 / 3, None, _SELFTRAIN, {"target_planes": AUTO_PLANES}),
        Stage("selftrain", "selftrain-2", 2 / 3, None, _SELFTRAIN, {"target_planes": AUTO_PLANES}),
    ),
    "Y-Net alignment, then two rounds of class-balanced self-training, each taught by the "
    "model the rounds before it kept; target planes by the target's voxel size.",
)


def load_recipe(path: str | Path) -> Recipe:
    """A recipe from a TOML file (see the module docstring), checked by :func:`check_recipe`."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise EmdaError(f"--recipe {path}: no such file") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise EmdaError(f"--recipe {path}: not a readable TOML file ({exc})") from None
    table = data.get("recipe")
    if not isinstance(table, dict) or not isinstance(table.get("stage"), list):
        raise EmdaError(f"--recipe {path}: expected a [recipe] table with [[recipe.stage]] entries")
    known = {"name", "method", "share", "iterations", "opt", "settings"}
    stages = []
    for i, entry in enumerate(table["stage"], 1):
        where = f"--recipe {path}: stage {i}"
        if not isinstance(entry, dict) or "method" not in entry:
            raise EmdaError(f"{where}: needs method = NAME")
        if unknown := sorted(set(entry) - known):
            raise EmdaError(
                f"{where}: unknown key {unknown[0]!r} (known: {', '.join(sorted(known))})"
            )
        try:
            stages.append(Stage(
                method=str(entry["method"]), name=str(entry.get("name", "")),
                share=float(entry.get("share", 1.0)), iterations=entry.get("iterations"),
                options=dict(entry.get("opt", {})), settings=dict(entry.get("settings", {})),
            ))  # fmt: skip
        except (TypeError, ValueError) as exc:
            raise EmdaError(f"{where}: {exc}") from None
    recipe = Recipe(
        str(table.get("name", path.stem)), tuple(stages), str(table.get("description", ""))
    )
    check_recipe(recipe, f"--recipe {path}")
    return recipe


def check_recipe(recipe: Recipe, where: str = "recipe") -> None:
    """Every stage's method, options and settings exist and are valid: a recipe fails
    before its first stage writes anything, not an hour into the run."""
    if not recipe.stages:
        raise EmdaError(f"{where}: has no stages")
    registry = load_registry()
    names = set()
    for i, stage in enumerate(recipe.stages, 1):
        label = f"{where}: stage {i} ({stage.name or stage.method})"
        try:
            info = registry.get(stage.method)
        except EmdaError as exc:
            raise EmdaError(f"{label}: {exc}") from None
        try:
            parse_options(info.cls.Options, stage.options, stage.method)
        except EmdaError as exc:
            raise EmdaError(f"{label}: {exc}") from None
        if stage.iterations is not None and (
            not isinstance(stage.iterations, int) or stage.iterations <= 0
        ):
            raise EmdaError(f"{label}: iterations must be a positive integer")
        if not stage.share > 0:
            raise EmdaError(f"{label}: share must be positive")
        fields = {f.name for f in dataclasses.fields(TrainConfig)} - set(RUN_SETTINGS)
        for key, value in stage.settings.items():
            if key not in fields:
                raise EmdaError(
                    f"{label}: setting {key!r} is not one a stage can change "
                    f"(those are: {', '.join(sorted(fields))})"
                )
            if key == "target_planes" and value not in (*TARGET_PLANES, AUTO_PLANES):
                raise EmdaError(f"{label}: target_planes must be xy, ortho or auto")
        name = stage_dir_name(i, stage)
        if name in names:
            raise EmdaError(f"{label}: two stages named {name}")
        names.add(name)


def stage_dir_name(index: int, stage: Stage) -> str:
    return f"{index}-{stage.name or stage.method}"


def has_teacher(method: str) -> bool:
    """Whether a method is taught by an earlier model (it has a ``teacher`` option)."""
    return "teacher" in option_fields(load_registry().get(method).cls.Options)
