"""One config object for a training run; presets per dataset; CLI flags generated from it.

Every hyper-parameter is named once, here (big_vision style). `--preset svhn`
picks a preset and any field can be overridden: `--batch_size 64 --model wrn-28-2`.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from typing import Optional, Sequence

from noisystudent import splits

MODES = ("supervised", "offline", "online")
INPUT_NOISE = ("none", "svhn", "imagenet")
MAX_MAGNITUDE = 30.0  # RandAugment; the original's help: "usually best values are in the range [5, 30]"


def _f(default, help_text: str):
    return dataclasses.field(default=default, metadata={"help": help_text})


@dataclasses.dataclass
class TrainConfig:
    # What to train, on what
    mode: str = _f("supervised", "supervised (the first teacher) | offline (stored pseudo labels) "
                                 "| online (a frozen teacher labels each batch)")
    model: str = _f("cnn-small", "student network name (model/ registry)")
    teacher: str = _f("", "online mode: the teacher's .keras file; also used to check sizes")
    allow_smaller_student: bool = _f(False, "accept a student smaller than its teacher")
    init_checkpoint: str = _f("", "start from weights: a .keras file, or an original EfficientNet / Noisy "
                                  "Student TF checkpoint (its head is skipped when the class count differs)")
    train_head_only: bool = _f(False, "fine-tune only the classifier (with init_checkpoint)")
    labeled_data: str = _f("", "dataset dir (with summary.json) or glob of image records")
    labeled_split: str = _f(splits.LABELED, "split of labeled_data to train on")
    unlabeled_data: str = _f("", "offline: the selection job's output; online: image records")
    unlabeled_split: str = _f(splits.PSEUDO_LABELED, "split of unlabeled_data")
    eval_data: str = _f("", "dataset dir or glob evaluated at the end (default: labeled_data)")
    eval_split: str = _f(splits.TEST, "split of eval_data")
    eval_center_crop: bool = _f(False, "evaluate on the original's ImageNet crop (central size/(size+32) of "
                                       "the shorter side, bicubic) instead of the whole image")
    num_classes: int = _f(0, "0: read from labeled_data's summary.json")
    image_size: int = _f(32, "square input side; images are resized to it")
    normalization: str = _f("imagenet", "EfficientNet input mean/std: imagenet | svhn (the original's "
                                        "task_info.py)")
    small_image_model: bool = _f(False, "EfficientNet: stride 1 in its 2nd and 3rd stages, as the original "
                                        "for 32-px images (final feature map 4x4 instead of 1x1)")
    # Optimisation
    batch_size: int = _f(128, "labeled images per step (per replica group)")
    unlabel_ratio: int = _f(5, "pseudo-labeled images per labeled image in a step")
    train_steps: int = _f(1000, "optimizer steps in total")
    steps_per_epoch: int = _f(100, "steps between checkpoints, logs and evaluation (a Keras epoch; the "
                                   "LR schedule counts epochs of the labeled data, not these)")
    optimizer: str = _f("sgd", "sgd (Nesterov momentum 0.9) | rmsprop (the EfficientNet recipe) | adam")
    learning_rate: float = _f(0.1, "base LR per 256 labeled images; scaled by batch_size/256")
    lr_schedule: str = _f("cosine", "cosine | exponential (x0.97 every decay_epochs, staircase, the original's)")
    num_train_images: int = _f(0, "labeled images in one epoch of the LR schedule; 0 = the labeled split's "
                                  "size from summary.json (the original's num_train_images)")
    decay_epochs: float = _f(2.4, "exponential: epochs of the labeled data per x0.97 decay")
    final_base_lr: float = _f(0.0, "exponential: if > 0, decay_epochs is set so the base LR decays to this "
                                   "at the end (the original's SVHN script: 0.0002)")
    warmup_epochs: float = _f(0.0, "linear warm-up from 0, in epochs of the labeled data (the original: 5)")
    warmup_steps: int = _f(0, "linear warm-up, in steps (instead of warmup_epochs)")
    weight_decay: float = _f(1e-4, "L2 on all weights but BatchNorm's (sum(w^2)/2 scaled)")
    label_smoothing: float = _f(0.1, "on the labeled cross-entropy")
    tpu: str = _f("auto", "auto (use a TPU when the VM has one) | none")
    precision: str = _f("auto", "float32 | bfloat16 (Keras mixed precision: bfloat16 compute, float32 weights, "
                                "softmax and loss) | auto (bfloat16 on TPUs, else float32); model.keras and "
                                "the SavedModel are saved in float32 either way")
    ema_momentum: float = _f(0.0, "EMA decay of the weights and BatchNorm statistics, evaluated and exported "
                                  "(0 = off; the original: 0.9999, warmed up as min(d, (1+n)/(10+n)))")
    # The method
    label_type: str = _f("hard", "hard (argmax, the original's default) | soft")
    temperature: float = _f(1.0, "soft labels: q^(1/T), renormalised (T < 1 sharpens)")
    unlabeled_weight: float = _f(-1.0, "weight of the unlabeled CE; -1 = unlabel_ratio (the original)")
    # Noise
    randaugment_ops: int = _f(2, "RandAugment: ops per image (0 = no RandAugment)")
    randaugment_magnitude: float = _f(5.0, "RandAugment magnitude M, the original's scale (10 = its 'max' level; "
                                           "0..30 accepted, B7 used 27)")
    randaugment_translate_const: int = _f(100, "RandAugment translation at M = 10, in pixels (the original: "
                                               "100; image_size // 8 for 32-px images)")
    randaugment_cutout_const: int = _f(40, "RandAugment cutout half-side at M = 10, in pixels (the original: "
                                           "40; image_size // 8 for 32-px images)")
    randaugment_cutout_op: bool = _f(True, "Cutout among RandAugment's ops (the original's --cutout_op, on)")
    augment_labeled: bool = _f(True, "apply the input noise to labeled images too")
    input_noise: str = _f("none", "noise besides RandAugment: none | svhn (after it: cutout of side size/2 "
                                  "filled with 128, then a reflect-pad-4 random crop) | imagenet (before it: "
                                  "Inception crop, bicubic resize, random flip)")
    dropout_rate: float = _f(-1.0, "before the classifier; -1 = the model's default")
    stochastic_depth_rate: float = _f(0.2, "stochastic depth: block i of N drops with this x i / N (the "
                                            "original's; the last block just under it)")
    bn_momentum: float = _f(-1.0, "BatchNorm momentum; -1 = the model's default")
    # FixRes fine-tuning on un-augmented labeled data
    finetune_steps: int = _f(0, "0 = none; else steps at finetune_image_size without noise")
    finetune_image_size: int = _f(0, "0 = image_size")
    # Where things go (AIP_* variables from Vertex AI override the defaults)
    output_dir: str = _f("runs/train", "model, eval.json and (by default) checkpoints and logs")
    checkpoint_dir: str = _f("", "default: $AIP_CHECKPOINT_DIR or <output_dir>/checkpoints")
    tensorboard_dir: str = _f("", "default: $AIP_TENSORBOARD_LOG_DIR or <output_dir>/logs")
    saved_model: bool = _f(True, "also export saved_model/ (serving signatures; needs TensorFlow); false: "
                                 "model.keras only, what predict, classify and the next iteration read")
    seed: int = _f(0, "seed of initialisation and input order")
    shuffle_buffer: int = _f(10000, "tf.data shuffle buffer (records)")
    verbose: int = _f(2, "Keras fit verbosity: 0 silent, 1 progress bar, 2 one line per epoch")

    def resolved_unlabeled_weight(self) -> float:
        return float(self.unlabel_ratio) if self.unlabeled_weight < 0 else self.unlabeled_weight

    def model_dir(self) -> str:
        return os.environ.get("AIP_MODEL_DIR") or self.output_dir

    def resolved_checkpoint_dir(self) -> str:
        return self.checkpoint_dir or os.environ.get("AIP_CHECKPOINT_DIR") or os.path.join(
            self.output_dir, "checkpoints")

    def resolved_tensorboard_dir(self) -> str:
        return self.tensorboard_dir or os.environ.get("AIP_TENSORBOARD_LOG_DIR") or os.path.join(
            self.output_dir, "logs")

    def validate(self) -> None:
        """Refuse bad configs with a message naming the field."""
        def need(ok: bool, field: str, message: str):
            if not ok:
                raise ValueError(f"config field {field!r}: {message} (got {getattr(self, field)!r})")

        need(self.mode in MODES, "mode", f"must be one of {', '.join(MODES)}")
        need(bool(self.labeled_data), "labeled_data", "is required")
        need(self.mode == "supervised" or bool(self.unlabeled_data), "unlabeled_data",
             f"is required in {self.mode} mode")
        need(self.mode != "online" or bool(self.teacher), "teacher", "online mode needs the teacher's .keras file")
        need(self.batch_size >= 1, "batch_size", "must be >= 1")
        need(self.unlabel_ratio >= 1 or self.mode == "supervised", "unlabel_ratio", "must be >= 1")
        need(self.train_steps >= 1, "train_steps", "must be >= 1")
        need(1 <= self.steps_per_epoch, "steps_per_epoch", "must be >= 1")
        need(self.optimizer in ("sgd", "rmsprop", "adam"), "optimizer", "must be sgd, rmsprop or adam")
        need(self.precision in ("auto", "float32", "bfloat16"), "precision", "must be auto, float32 or bfloat16")
        need(self.input_noise in INPUT_NOISE, "input_noise", f"must be one of {', '.join(INPUT_NOISE)}")
        need(self.normalization in ("imagenet", "svhn"), "normalization", "must be imagenet or svhn")
        need(self.lr_schedule in ("cosine", "exponential"), "lr_schedule", "must be cosine or exponential")
        need(self.label_type in ("hard", "soft"), "label_type", "must be hard or soft")
        need(self.temperature > 0, "temperature", "must be > 0")
        need(0 <= self.label_smoothing < 1, "label_smoothing", "must be in [0, 1)")
        need(0 <= self.ema_momentum < 1, "ema_momentum", "must be in [0, 1)")
        need(0 <= self.randaugment_magnitude <= MAX_MAGNITUDE, "randaugment_magnitude",
             f"must be in [0, {MAX_MAGNITUDE:g}]")
        need(self.randaugment_translate_const >= 0, "randaugment_translate_const", "must be >= 0")
        need(self.randaugment_cutout_const >= 0, "randaugment_cutout_const", "must be >= 0")
        need(self.image_size >= 8, "image_size", "must be >= 8")
        need(self.warmup_steps < self.train_steps, "warmup_steps", "must be < train_steps")
        need(not (self.warmup_steps and self.warmup_epochs), "warmup_epochs",
             "give warmup_epochs or warmup_steps, not both")
        need(self.decay_epochs > 0, "decay_epochs", "must be > 0")
        need(0 <= self.final_base_lr < self.learning_rate or self.final_base_lr == 0, "final_base_lr",
             "must be below learning_rate")
        need(self.num_train_images >= 0, "num_train_images", "must be >= 0")


DEFAULT_PRESET = "digits"  # what loop, benchmark and experiments train with unless told
PRESETS: dict[str, dict] = {
    # The demo: 32x32 digits, a small CNN, a few hundred steps on 2 CPU cores.
    "digits": dict(model="cnn-small", image_size=32, batch_size=32, unlabel_ratio=3, train_steps=400,
                   steps_per_epoch=50, optimizer="adam", learning_rate=0.008, warmup_steps=20,
                   weight_decay=5e-5, label_smoothing=0.1, randaugment_ops=2, randaugment_magnitude=3,
                   randaugment_translate_const=4, randaugment_cutout_const=4, stochastic_depth_rate=0.1,
                   labeled_split=splits.LABELED, eval_split=splits.TEST,
                   shuffle_buffer=2000),
    # The original's SVHN recipe (google-research/noisystudent local_scripts/svhn/run.sh and main.py;
    # docs/recipes.md lists every value with its line).
    "svhn": dict(model="efficientnet-b0", image_size=32, small_image_model=True, normalization="svhn",
                 batch_size=128, unlabel_ratio=5,
                 train_steps=109474, steps_per_epoch=1000, optimizer="rmsprop", learning_rate=0.016,
                 lr_schedule="exponential", warmup_epochs=5.0, final_base_lr=0.0002, weight_decay=1e-4,
                 label_smoothing=0.1, label_type="soft", temperature=1.0, randaugment_ops=2,
                 randaugment_magnitude=5, randaugment_translate_const=4, randaugment_cutout_const=4,
                 input_noise="svhn", stochastic_depth_rate=0.2, ema_momentum=0.9999,
                 labeled_split="train", eval_split="test", mode="online", precision="float32"),
    # ImageNet as the original's scripts run it (main.py defaults; local_scripts/imagenet/train.sh for
    # B7): batch 4096, 350 epochs of the labeled data (109,474 steps).
    "imagenet": dict(model="efficientnet-b7", image_size=600, batch_size=4096, unlabel_ratio=3,
                     train_steps=109474, steps_per_epoch=5000, optimizer="rmsprop", learning_rate=0.016,
                     lr_schedule="exponential", warmup_epochs=5.0, decay_epochs=2.4, weight_decay=1e-5,
                     label_smoothing=0.1, randaugment_ops=2, randaugment_magnitude=27,
                     input_noise="imagenet",
                     stochastic_depth_rate=0.2, ema_momentum=0.9999, labeled_split="train",
                     eval_split=splits.VALIDATION, eval_center_crop=True, label_type="soft", temperature=1.0,
                     mode="online", precision="float32"),
}


def get_config(preset: Optional[str] = None, **overrides) -> TrainConfig:
    """A preset (or the defaults) with fields overridden."""
    values = {}
    if preset:
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
        values.update(PRESETS[preset])
    values.update(overrides)
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"unknown config field(s) {unknown}")
    return TrainConfig(**values)


def parse_bool(text: str) -> bool:
    """true/false (also 1/0, yes/no, on/off), as the trainer's boolean flags take them."""
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


def build_parser(prog: str = "python -m trainer.task") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description="Train a teacher or a noisy student (Keras 3).",
        epilog="Presets: " + ", ".join(PRESETS) + ". Flags override the preset's fields.")
    parser.add_argument("--preset", choices=sorted(PRESETS), help="start from a dataset preset")
    for f in dataclasses.fields(TrainConfig):
        kind = parse_bool if f.type in ("bool", bool) else {"int": int, "float": float}.get(f.type, str)
        parser.add_argument(f"--{f.name}", type=kind, default=None,
                            help=f"{f.metadata['help']} (default {f.default!r})")
    return parser


def config_from_args(argv: Optional[Sequence[str]] = None) -> TrainConfig:
    args = build_parser().parse_args(argv)
    overrides = {k: v for k, v in vars(args).items() if k != "preset" and v is not None}
    return get_config(args.preset, **overrides)


def recipe(preset: str, train_args: Sequence[str] = (), overrides: Optional[dict] = None, **fields) -> TrainConfig:
    """What the loop and its references train with: the preset with `fields` (data, splits, seed), then the
    user's trainer flags (`--train_args`), then an experiment's `train` section (`overrides`)."""
    config = with_flags(get_config(preset, **fields), train_args)
    return dataclasses.replace(config, **(overrides or {}))


def with_flags(config: TrainConfig, argv: Sequence[str]) -> TrainConfig:
    """`config` with trainer flags (e.g. a loop's --train_args) applied on top; --preset is not one."""
    args, unknown = build_parser().parse_known_args(list(argv))
    if unknown or args.preset:
        raise ValueError(f"trainer flags: {'--preset is set by the caller' if args.preset else 'unknown flag(s) '}"
                         f"{' '.join(unknown)}")
    config = dataclasses.replace(config, **{k: v for k, v in vars(args).items() if k != "preset" and v is not None})
    config.validate()
    return config
