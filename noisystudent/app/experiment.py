"""One experiment, one file: every stage of the loop configured in one place.

An experiment file is a Python module whose `get_config()` returns an `Experiment`:

    from noisystudent.app.experiment import Experiment

    def get_config() -> Experiment:
        return Experiment(data="runs/mnist/data-seed{seed}", models=["cnn-small", "cnn-medium", "cnn-medium"],
                          preset="digits", seeds=[0, 1, 2], train={"train_steps": 2000},
                          select={"min_threshold": 0.3}, predict={"precision": "float32"})

`train`, `predict` and `select` hold fields of the trainer's TrainConfig (over the preset), predict's
PredictConfig and select's SelectConfig: each knob keeps the one name and default its stage gives it,
and an unknown name or a wrong type is refused with the dotted name. `noisystudent loop|benchmark
--config F` runs it (F: a file, or the name of one shipped in noisystudent/app/experiments/); any field
can be changed on the command line by its dotted name (`--config.select.num_image 1000`,
`--config.seeds 0,1`); `--print_config` prints the resolved experiment as JSON and exits.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
from typing import Any, Sequence

from noisystudent import splits
from noisystudent.typed_flags import field_types
from trainer.config import DEFAULT_PRESET, parse_bool

SHIPPED_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "experiments")
# Fields each loop step sets itself (where its inputs and outputs are, which teacher, the seed).
KIND_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true or false", list: "a list",
              dict: "a dict"}
PER_RUN_FIELDS = {"predict": ("input", "split", "model", "output_dir", "teacher_name", "overwrite", "seed"),
                  "select": ("predictions", "output_dir", "overwrite", "seed"),
                  "train": ("labeled_data", "labeled_split", "eval_split", "unlabeled_data", "unlabeled_split",
                            "output_dir", "model", "mode", "teacher", "seed")}


@dataclasses.dataclass
class Experiment:
    """The method on one dataset: the data, the models per iteration and each stage's settings."""

    data: str  # dataset dir; "{seed}" picks one per seed, "{run_dir}" the run's own folder
    models: list[str]  # the teacher, then one student per iteration (equal or larger)
    preset: str = DEFAULT_PRESET  # the trainer's recipe (trainer/config.py PRESETS)
    seeds: list[int] = dataclasses.field(default_factory=lambda: [0])
    labeled_split: str = splits.LABELED
    unlabeled_split: str = splits.UNLABELED
    eval_split: str = ""  # "": the preset's
    ceiling: bool = True  # benchmark: the supervised ceiling and the student's model on the labels alone
    title: str = ""
    train: dict = dataclasses.field(default_factory=dict)  # TrainConfig fields over the preset
    predict: dict = dataclasses.field(default_factory=dict)  # PredictConfig fields
    select: dict = dataclasses.field(default_factory=dict)  # SelectConfig fields; num_image 0: unlabeled/classes

    def __post_init__(self):
        for section, config_class in _stage_classes().items():
            check_fields(section, getattr(self, section), config_class)
        if len(self.models) < 2:
            raise ValueError("experiment field 'models': a teacher and at least one student")


def _stage_classes() -> dict[str, type]:
    from beam_pipelines.predict import PredictConfig
    from beam_pipelines.select import SelectConfig
    from trainer.config import TrainConfig

    return {"train": TrainConfig, "predict": PredictConfig, "select": SelectConfig}


def check_fields(section: str, values: dict, config_class: type) -> None:
    """Every key a field of `config_class` the experiment may set, every value of its type."""
    types = field_types(config_class)
    for name, value in values.items():
        if name not in types:
            raise ValueError(f"experiment field '{section}.{name}': {config_class.__name__} has no such field")
        if name in PER_RUN_FIELDS[section]:
            raise ValueError(f"experiment field '{section}.{name}': the loop sets it for each step; "
                             "set the experiment's own field instead (data, models, seeds, splits)")
        kind = types[name]
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) if kind is float else \
            isinstance(value, kind) and not (kind is int and isinstance(value, bool))
        if not ok:
            raise ValueError(f"experiment field '{section}.{name}': {value!r} is not {KIND_NAMES[kind]}")


def load(name_or_path: str) -> Experiment:
    """`get_config()` of an experiment file, or of one shipped under noisystudent/app/experiments/ by name."""
    path = name_or_path
    if not os.path.exists(path):
        shipped = os.path.join(SHIPPED_DIR, f"{name_or_path}.py")
        if not os.path.exists(shipped):
            names = sorted(f[:-3] for f in os.listdir(SHIPPED_DIR) if f.endswith(".py") and f != "__init__.py")
            raise FileNotFoundError(f"--config {name_or_path}: no such file, and no shipped experiment of that name "
                                    f"({', '.join(names)})")
        path = shipped
    spec = importlib.util.spec_from_file_location(f"experiment_{os.path.basename(path)[:-3]}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise ValueError(f"--config {path}: an experiment file defines get_config() -> Experiment")
    experiment = module.get_config()
    if not isinstance(experiment, Experiment):
        raise ValueError(f"--config {path}: get_config() returned {type(experiment).__name__}, not an Experiment")
    return experiment


def _parse(text: str, kind: type, dotted: str) -> Any:
    try:
        return parse_bool(text) if kind is bool else kind(text)
    except (ValueError, argparse.ArgumentTypeError):
        raise ValueError(f"--config.{dotted} {text!r}: expected {KIND_NAMES[kind]}") from None


def override(experiment: Experiment, pairs: Sequence[tuple[str, str]]) -> Experiment:
    """Apply `--config.a.b value` pairs: a top-level field, or a stage's field (`select.num_image`)."""
    top = field_types(Experiment)
    changes: dict[str, Any] = {}
    for dotted, text in pairs:
        head, _, rest = dotted.partition(".")
        if head in ("train", "predict", "select") and rest:
            kind = field_types(_stage_classes()[head]).get(rest)
            if kind is None:
                raise ValueError(f"--config.{dotted}: {_stage_classes()[head].__name__} has no field {rest!r}")
            changes.setdefault(head, dict(getattr(experiment, head)))[rest] = _parse(text, kind, dotted)
        elif head in top and not rest and head not in ("train", "predict", "select"):
            kind = top[head]
            if head == "models":
                changes[head] = [m.strip() for m in text.split(",") if m.strip()]
            elif head == "seeds":
                changes[head] = [_parse(s, int, dotted) for s in text.split(",") if s.strip()]
            else:
                changes[head] = _parse(text, kind, dotted)
        else:
            raise ValueError(f"--config.{dotted}: not a field of the experiment (fields: "
                             f"{', '.join(top)}; stage fields as train.X, predict.X, select.X)")
    return dataclasses.replace(experiment, **changes)


def split_config_flags(argv: Sequence[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """(the other flags, the `--config.X value` / `--config.X=value` pairs)."""
    rest, pairs, args, i = [], [], list(argv), 0
    while i < len(args):
        arg = args[i]
        if arg.startswith("--config."):
            name, eq, value = arg[len("--config."):].partition("=")
            if not eq:
                if i + 1 >= len(args):
                    raise ValueError(f"{arg}: needs a value")
                value, i = args[i + 1], i + 1
            pairs.append((name, value))
        else:
            rest.append(arg)
        i += 1
    return rest, pairs


def resolved(experiment: Experiment) -> dict:
    """The experiment as each stage will run it: the trainer's whole recipe (preset + overrides), predict's
    and select's settings with their defaults filled in (the per-step paths left out)."""
    from trainer.config import get_config

    stages = _stage_classes()
    recipe = dataclasses.asdict(get_config(experiment.preset, **experiment.train))
    out = {k: v for k, v in dataclasses.asdict(experiment).items() if k not in ("train", "predict", "select")}
    out["eval_split"] = experiment.eval_split or recipe["eval_split"]
    out["train"] = {k: v for k, v in recipe.items() if k not in PER_RUN_FIELDS["train"]}
    def defaults(section: str) -> dict:
        return {f.name: f.default for f in dataclasses.fields(stages[section])
                if f.default is not dataclasses.MISSING and f.name not in PER_RUN_FIELDS[section]}

    out["predict"] = {**defaults("predict"), "center_crop": recipe["eval_center_crop"], **experiment.predict}
    out["select"] = {**defaults("select"), "num_image": 0, **experiment.select}
    return json.loads(json.dumps(out))
