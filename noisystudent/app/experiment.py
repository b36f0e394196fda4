"""One experiment, one file: every stage of the loop configured in one place.

An experiment file is a Python module whose `get_config()` returns an `Experiment`:

    from noisystudent.app.experiment import Experiment

    def get_config() -> Experiment:
        return Experiment(data="runs/mnist/data-seed{seed}", models=["cnn-small", "cnn-medium", "cnn-medium"],
                          preset="digits", seeds=[0, 1, 2], train={"train_steps": 2000},
                          select={"min_threshold": 0.3}, predict={"precision": "float32"})

`train`, `predict`, `select` and `evaluate` hold fields of the trainer's TrainConfig (over the preset),
predict's PredictConfig, select's SelectConfig and evaluate's EvaluateConfig (the benchmark's robustness
measures, with robustness=True); `student` holds TrainConfig fields laid over `train` for the students
alone (`student={"train_steps": 6000}`: the teacher and the references keep `train`'s). Each knob
keeps the one name and default its stage gives it, and an unknown name or a wrong type is refused with
the dotted name. `noisystudent loop|benchmark --config F` runs it (F: a file, or the name of one
shipped in noisystudent/app/experiments/); any field can be changed on the command line by its dotted
name (`--config.select.num_image 1000`, `--config.seeds 0,1`); `--print_config` prints the resolved
experiment as JSON and exits.

The loop's and the benchmark's other flags are shorthand for the same fields, laid over the file (or,
without --config, over this dataclass's defaults): `--data` is `--config.data`, `--num_image` is
`--config.select.num_image`, `--train_args "--train_steps 30"` is `--config.train.train_steps 30`.
One field given twice (`--min_threshold` and `--select_args "--min_threshold ..."`) is refused.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
from typing import Any, Sequence

from noisystudent import splits
from noisystudent.typed_flags import field_types, given, parse_bool
from trainer.config import DEFAULT_PRESET, PRESETS

SHIPPED_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "experiments")
# Fields each loop step sets itself (where its inputs and outputs are, which teacher, the seed).
KIND_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true or false", list: "a list",
              dict: "a dict"}
STAGES = ("train", "student", "predict", "select", "evaluate")
PER_RUN_FIELDS = {"evaluate": ("model", "data", "output_dir", "reference", "split", "allow_damaged_input",
                               "overwrite"),
                  "predict": ("input", "split", "model", "output_dir", "teacher_name", "overwrite", "seed"),
                  "select": ("predictions", "output_dir", "overwrite", "seed"),
                  "train": ("labeled_data", "labeled_split", "eval_split", "unlabeled_data", "unlabeled_split",
                            "output_dir", "model", "mode", "teacher", "seed")}
PER_RUN_FIELDS["student"] = PER_RUN_FIELDS["train"]
# The loop's selection where an experiment is silent (its select section overrides each). num_image 0:
# unlabeled images / classes. min_threshold 0.7, not select's own 0.3 (the original's filter_unlabel.sh:36,
# which the svhn and imagenet experiments keep): over 3 seeds at 3, 10 and 100 MNIST labels per class the
# last student gained +4.00, +1.03 and +0.05 (neutral) points with it, paired against 0.3; the digits demo
# is neutral (docs/benchmarks.md, "When the teacher is often wrong").
LOOP_SELECT_DEFAULTS = {"num_image": 0, "min_threshold": 0.7}


@dataclasses.dataclass
class Experiment:
    """The method on one dataset: the data, the models per iteration and each stage's settings."""

    data: str  # dataset dir; "{seed}" picks one per seed, "{run_dir}" the run's own folder
    # the teacher, then one student per iteration (equal or larger); by default the larger student of
    # docs/benchmarks.md
    models: list[str] = dataclasses.field(default_factory=lambda: ["cnn-small", "cnn-medium", "cnn-medium"])
    preset: str = DEFAULT_PRESET  # the trainer's recipe (trainer/config.py PRESETS)
    seeds: list[int] = dataclasses.field(default_factory=lambda: [0, 1, 2])  # the loop runs the first
    labeled_split: str = splits.LABELED
    unlabeled_split: str = splits.UNLABELED
    eval_split: str = ""  # "": the preset's
    ceiling: bool = True  # benchmark: the supervised ceiling and the student's model on the labels alone
    robustness: bool = False  # benchmark: every model on corrupted and FGSM images (the evaluate section)
    title: str = ""
    train: dict = dataclasses.field(default_factory=dict)  # TrainConfig fields over the preset
    # TrainConfig fields over `train`, for the students only (the teacher and the references train with
    # `train`): a longer budget or stronger noise for the students, as the paper's
    student: dict = dataclasses.field(default_factory=dict)
    predict: dict = dataclasses.field(default_factory=dict)  # PredictConfig fields
    select: dict = dataclasses.field(default_factory=dict)  # SelectConfig fields over LOOP_SELECT_DEFAULTS
    evaluate: dict = dataclasses.field(default_factory=dict)  # EvaluateConfig fields (with robustness)

    def __post_init__(self):
        for section, config_class in _stage_classes().items():
            check_fields(section, getattr(self, section), config_class)
        if len(self.models) < 2:
            raise ValueError("experiment field 'models': a teacher and at least one student")


def _stage_classes() -> dict[str, type]:
    from beam_pipelines.predict import PredictConfig
    from beam_pipelines.select import SelectConfig
    from beam_pipelines.evaluate import EvaluateConfig
    from trainer.config import TrainConfig

    return {"train": TrainConfig, "student": TrainConfig, "predict": PredictConfig, "select": SelectConfig,
            "evaluate": EvaluateConfig}


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


def _parse(text: str, kind: type, spelled: str) -> Any:
    try:
        return parse_bool(text) if kind is bool else kind(text)
    except (ValueError, argparse.ArgumentTypeError):
        raise ValueError(f"{spelled} {text!r}: expected {KIND_NAMES[kind]}") from None


def parse_value(dotted: str, text: str, spelled: str = "") -> Any:
    """The typed value of `--config.<dotted> <text>` (or of the flag `spelled`): a top-level field, or a
    stage's (`select.num_image`)."""
    spelled = spelled or f"--config.{dotted}"
    head, _, rest = dotted.partition(".")
    if head in STAGES and rest:
        kind = field_types(_stage_classes()[head]).get(rest)
        if kind is None:
            raise ValueError(f"{spelled}: {_stage_classes()[head].__name__} has no field {rest!r}")
        return _parse(text, kind, spelled)
    top = field_types(Experiment)
    if head not in top or rest or head in STAGES:
        raise ValueError(f"{spelled}: not a field of the experiment (fields: {', '.join(top)}; stage fields as "
                         "train.X, student.X, predict.X, select.X, evaluate.X)")
    if head == "models":
        return [m.strip() for m in text.split(",") if m.strip()]
    if head == "seeds":
        try:
            seeds = [int(s) for s in text.split(",") if s.strip()]
        except ValueError:
            raise ValueError(f"{spelled} {text!r}: expected comma-separated integers, e.g. 0,1,2") from None
        if not seeds:
            raise ValueError(f"{spelled} {text!r}: give at least one seed, e.g. 0,1,2")
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"{spelled} {text!r}: a seed is repeated")
        return seeds
    return _parse(text, top[head], spelled)


def apply(experiment: Experiment, values: dict[str, Any]) -> Experiment:
    """`experiment` with typed values set by dotted name (`{"select.num_image": 1000, "seeds": [0]}`)."""
    changes: dict[str, Any] = {}
    for dotted, value in values.items():
        head, _, rest = dotted.partition(".")
        if rest:
            changes.setdefault(head, dict(getattr(experiment, head)))[rest] = value
        else:
            changes[head] = value
    return dataclasses.replace(experiment, **changes)


def override(experiment: Experiment, pairs: Sequence[tuple[str, str]]) -> Experiment:
    """Apply `--config.a.b value` pairs: a top-level field, or a stage's field (`select.num_image`)."""
    return apply(experiment, {dotted: parse_value(dotted, text) for dotted, text in pairs})


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
    select's and evaluate's settings with their defaults filled in (the per-step paths left out)."""
    from trainer.config import get_config

    stages = _stage_classes()
    recipe = dataclasses.asdict(get_config(experiment.preset, **experiment.train))
    out = {k: v for k, v in dataclasses.asdict(experiment).items() if k not in STAGES}
    out["eval_split"] = experiment.eval_split or recipe["eval_split"]
    out["train"] = {k: v for k, v in recipe.items() if k not in PER_RUN_FIELDS["train"]}
    out["student"] = dict(experiment.student)  # what the students change of `train`
    def defaults(section: str) -> dict:
        return {f.name: f.default for f in dataclasses.fields(stages[section])
                if f.default is not dataclasses.MISSING and f.name not in PER_RUN_FIELDS[section]}

    out["predict"] = {**defaults("predict"), "center_crop": recipe["eval_center_crop"], **experiment.predict}
    out["select"] = {**defaults("select"), **LOOP_SELECT_DEFAULTS, **experiment.select}
    out["evaluate"] = {**defaults("evaluate"), "center_crop": recipe["eval_center_crop"], **experiment.evaluate}
    return json.loads(json.dumps(out))


# The loop's and the benchmark's shorthand flags: flag -> (the experiment field it sets, its help).
SHORTHAND = {
    "data": ("data", "Dataset dir with labeled, unlabeled and test splits; '{seed}' in it picks one per seed."),
    "models": ("models", "Comma-separated: the teacher, then one student per iteration (equal or larger)."),
    "preset": ("preset", f"Trainer preset ({', '.join(PRESETS)})."),
    "labeled_split": ("labeled_split", "Split the teacher and the students learn labels from."),
    "unlabeled_split": ("unlabeled_split", "Split the teacher labels."),
    "eval_split": ("eval_split", "Split the models are evaluated on ('': the preset's)."),
    "num_image": ("select.num_image", "Pseudo-labeled images per class (0: unlabeled images / classes)."),
    "min_threshold": ("select.min_threshold", "Selection's lowest confidence."),
}
STAGE_FLAGS = {"train_args": "train", "predict_args": "predict", "select_args": "select",
               "evaluate_args": "evaluate"}  # evaluate_args: the benchmark's
STAGE_FLAG_HELP = {"train": "Trainer flags, e.g. '--train_steps 600' (each sets train.X).",
                   "predict": "Predict flags, e.g. '--precision bfloat16 --prob_format top_k:5' (the center crop "
                              "follows the preset: on with imagenet, as the original's predict.sh).",
                   "select": "Selection flags, e.g. '--max_prob 1.0'.",
                   "evaluate": "With --robustness: evaluate's flags, e.g. '--corruptions gaussian_noise,fog "
                               "--max_images 1000' (noisystudent evaluate --help)."}


def flag_spelling(value: Any) -> str:
    """`value` as a flag takes it, the inverse of parse_value: a list comma-separated (seeds, models), a
    boolean true/false."""
    if isinstance(value, (list, tuple)):
        return ",".join(map(flag_spelling, value))
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _default_text(dotted: str, defaults: dict, note: str = "") -> str:
    """' (default X[note])' from the resolved default experiment, for a flag's help."""
    head, _, rest = dotted.partition(".")
    value = defaults[head][rest] if rest else defaults[head]
    return "" if value in (None, "") else f" (default {flag_spelling(value)}{note})"


def _stage_default_text(dotted: str) -> str:
    """For a select field whose loop default is not the select job's own: the job's, which is the original's."""
    section, _, name = dotted.partition(".")
    if section != "select" or name not in LOOP_SELECT_DEFAULTS:
        return ""
    own = next(f.default for f in dataclasses.fields(_stage_classes()["select"]) if f.name == name)
    if own is dataclasses.MISSING or own == LOOP_SELECT_DEFAULTS[name]:
        return ""
    return f"; select's own, the original's: {own}"


def add_flags(parser: argparse.ArgumentParser, benchmark: bool) -> argparse.ArgumentParser:
    """--config, --print_config and the shorthand flags (none with a default of its own: the experiment's
    shows in the help). The loop takes one --seed; the benchmark --seeds, --title and --no_ceiling."""
    names = ", ".join(sorted(f[:-3] for f in os.listdir(SHIPPED_DIR) if f.endswith(".py") and f != "__init__.py"))
    parser.add_argument("--config", default="", help=f"An experiment file, or a shipped one by name ({names}); "
                                                      "--config.FIELD VALUE overrides any field.")
    parser.add_argument("--print_config", action="store_true", help="Print the resolved experiment as JSON and exit.")
    defaults = resolved(Experiment(data=""))
    for flag, (dotted, help_text) in SHORTHAND.items():
        kind = int if dotted == "select.num_image" else float if dotted == "select.min_threshold" else str
        parser.add_argument(f"--{flag}", type=kind, default=argparse.SUPPRESS,
                            help=help_text + _default_text(dotted, defaults, _stage_default_text(dotted)))
    if benchmark:
        parser.add_argument("--seeds", default=argparse.SUPPRESS, help="Comma-separated seeds" + _default_text("seeds", defaults))
        parser.add_argument("--title", default=argparse.SUPPRESS, help="The table's title (default: 'Noisy Student "
                                                                       "on <data>').")
        parser.add_argument("--no_ceiling", action="store_true", default=argparse.SUPPRESS,
                            help="Skip the references (the supervised ceiling; the student's model on the labels "
                                 "alone).")
        parser.add_argument("--robustness", action="store_true", default=argparse.SUPPRESS,
                            help="Also every model on corrupted and FGSM images (noisystudent evaluate's measures; "
                                 "mCE against the teacher).")
    else:
        parser.add_argument("--seed", type=int, default=argparse.SUPPRESS,
                            help="The seed (default: the experiment's first, 0).")
    for flag, section in STAGE_FLAGS.items():
        if benchmark or section != "evaluate":
            parser.add_argument(f"--{flag}", default=argparse.SUPPRESS, help=STAGE_FLAG_HELP[section])
    return parser


def from_flags(args: argparse.Namespace, pairs: Sequence[tuple[str, str]]) -> Experiment:
    """The experiment the flags name: --config's file (or the defaults), the shorthand flags, then the
    `--config.X` pairs."""
    given_values = vars(args)
    values: dict[str, Any] = {}
    source: dict[str, str] = {}

    def put(dotted: str, value: Any, spelled: str) -> None:
        if dotted in values:
            raise ValueError(f"{source[dotted]} and {spelled} both set {dotted}: give it once")
        values[dotted], source[dotted] = value, spelled

    for flag, (dotted, _) in SHORTHAND.items():
        if flag in given_values:
            put(dotted, parse_value(dotted, given_values[flag], f"--{flag}") if dotted == "models"
                else given_values[flag], f"--{flag}")
    if "seed" in given_values:
        put("seeds", [given_values["seed"]], "--seed")
    if "seeds" in given_values:
        put("seeds", parse_value("seeds", given_values["seeds"], "--seeds"), "--seeds")
    if "title" in given_values:
        put("title", given_values["title"], "--title")
    if "no_ceiling" in given_values:
        put("ceiling", False, "--no_ceiling")
    if "robustness" in given_values:
        put("robustness", True, "--robustness")
    for flag, section in STAGE_FLAGS.items():
        for name, value in given(_stage_classes()[section], given_values.get(flag, "").split(), f"--{flag}").items():
            put(f"{section}.{name}", value, f"--{flag} '--{name}'")
    for dotted, text in pairs:
        put(dotted, parse_value(dotted, text), f"--config.{dotted}")
    experiment = apply(load(args.config) if args.config else Experiment(data=""), values)
    if not experiment.data:
        raise ValueError("--data is required (or --config F, an experiment file)")
    return experiment


def parse_flags(parser: argparse.ArgumentParser, argv: Sequence[str]) -> tuple[Experiment, argparse.Namespace]:
    """(the experiment, the parsed flags) of a loop's or a benchmark's command line."""
    rest, pairs = split_config_flags(argv)
    args = parser.parse_args(rest)
    return from_flags(args, pairs), args
