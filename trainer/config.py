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
from noisystudent.typed_flags import add_flags, flag

MODES = ("supervised", "offline", "online")
INPUT_NOISE = ("none", "svhn", "imagenet")
MAX_MAGNITUDE = 30.0  # RandAugment; the original's help: "usually best values are in the range [5, 30]"


@dataclasses.dataclass
class TrainConfig:
    # What to train, on what
    mode: str = flag("supervised", help="supervised (the first teacher) | offline (stored pseudo labels) "
                                 "| online (a frozen teacher labels each batch)")
    model: str = flag("cnn-small", help="student network name (model/ registry)")
    teacher: str = flag("", help="online mode: the teacher's .keras file; also used to check sizes")
    allow_smaller_student: bool = flag(False, help="accept a student smaller than its teacher")
    init_checkpoint: str = flag("", help="start from weights: a .keras file, or an original EfficientNet / Noisy "
                                  "Student TF checkpoint (its head is skipped when the class count differs)")
    train_head_only: bool = flag(False, help="fine-tune only the classifier (with init_checkpoint)")
    labeled_data: str = flag("", help="dataset dir (with summary.json) or glob of image records")
    labeled_split: str = flag(splits.LABELED, help="split of labeled_data to train on")
    unlabeled_data: str = flag("", help="offline: the selection job's output; online: image records")
    unlabeled_split: str = flag(splits.PSEUDO_LABELED, help="split of unlabeled_data")
    eval_data: str = flag("", help="dataset dir or glob evaluated at the end (default: labeled_data)")
    eval_split: str = flag(splits.TEST, help="split of eval_data")
    eval_center_crop: bool = flag(False, help="evaluate on the original's ImageNet crop (central size/(size+32) of "
                                       "the shorter side, bicubic) instead of the whole image")
    num_classes: int = flag(0, help="0: read from labeled_data's summary.json")
    image_size: int = flag(32, help="square input side; images are resized to it")
    normalization: str = flag("imagenet", help="EfficientNet input mean/std: imagenet | svhn (the original's "
                                        "task_info.py)")
    small_image_model: bool = flag(False, help="EfficientNet: stride 1 in its 2nd and 3rd stages, as the original "
                                        "for 32-px images (final feature map 4x4 instead of 1x1)")
    # Optimisation
    batch_size: int = flag(128, help="labeled images per step (per replica group)")
    unlabel_ratio: int = flag(5, help="pseudo-labeled images per labeled image in a step")
    train_steps: int = flag(1000, help="optimizer steps in total")
    steps_per_epoch: int = flag(100, help="steps between checkpoints, logs and evaluation (a Keras epoch; the "
                                   "LR schedule counts epochs of the labeled data, not these)")
    optimizer: str = flag("sgd", help="sgd (Nesterov momentum 0.9) | rmsprop (the EfficientNet recipe) | adam")
    learning_rate: float = flag(0.1, help="base LR per 256 labeled images; scaled by batch_size/256")
    lr_schedule: str = flag("cosine", help="cosine | exponential (x0.97 every decay_epochs, staircase, the original's)")
    num_train_images: int = flag(0, help="labeled images in one epoch of the LR schedule; 0 = the labeled split's "
                                  "size from summary.json (the original's num_train_images)")
    decay_epochs: float = flag(2.4, help="exponential: epochs of the labeled data per x0.97 decay")
    final_base_lr: float = flag(0.0, help="exponential: if > 0, decay_epochs is set so the base LR decays to this "
                                   "at the end (the original's SVHN script: 0.0002)")
    warmup_epochs: float = flag(0.0, help="linear warm-up from 0, in epochs of the labeled data (the original: 5)")
    warmup_steps: int = flag(0, help="linear warm-up, in steps (instead of warmup_epochs)")
    weight_decay: float = flag(1e-4, help="L2 on all weights but BatchNorm's (sum(w^2)/2 scaled)")
    label_smoothing: float = flag(0.1, help="on the labeled cross-entropy")
    tpu: str = flag("auto", help="auto (use a TPU when the VM has one) | none")
    precision: str = flag("auto", help="float32 | bfloat16 (Keras mixed precision: bfloat16 compute, float32 weights, "
                                "softmax and loss) | auto (bfloat16 on TPUs, else float32); model.keras and "
                                "the SavedModel are saved in float32 either way")
    ema_momentum: float = flag(0.0, help="EMA decay of the weights and BatchNorm statistics, evaluated and exported "
                                  "(0 = off; the original: 0.9999, warmed up as min(d, (1+n)/(10+n)))")
    # The method
    label_type: str = flag("hard", help="hard (argmax, the original's default) | soft")
    temperature: float = flag(1.0, help="soft labels: q^(1/T), renormalised (T < 1 sharpens)")
    unlabeled_weight: float = flag(-1.0, help="weight of the unlabeled CE; -1 = unlabel_ratio (the original)")
    # Noise
    randaugment_ops: int = flag(2, help="RandAugment: ops per image (0 = no RandAugment)")
    randaugment_magnitude: float = flag(5.0, help="RandAugment magnitude M, the original's scale (10 = its 'max' level; "
                                           "0..30 accepted, B7 used 27)")
    randaugment_translate_const: int = flag(100, help="RandAugment translation at M = 10, in pixels (the original: "
                                               "100; image_size // 8 for 32-px images)")
    randaugment_cutout_const: int = flag(40, help="RandAugment cutout half-side at M = 10, in pixels (the original: "
                                           "40; image_size // 8 for 32-px images)")
    randaugment_cutout_op: bool = flag(True, help="Cutout among RandAugment's ops (the original's --cutout_op, on)")
    augment_labeled: bool = flag(True, help="apply the input noise to labeled images too")
    input_noise: str = flag("none", help="noise besides RandAugment: none | svhn (after it: cutout of side size/2 "
                                  "filled with 128, then a reflect-pad-4 random crop) | imagenet (before it: "
                                  "Inception crop, bicubic resize, random flip)")
    dropout_rate: float = flag(-1.0, help="before the classifier; -1 = the model's default")
    stochastic_depth_rate: float = flag(0.2, help="stochastic depth: block i of N drops with this x i / N (the "
                                            "original's; the last block just under it)")
    bn_momentum: float = flag(-1.0, help="BatchNorm momentum; -1 = the model's default")
    # FixRes fine-tuning on un-augmented labeled data
    finetune_steps: int = flag(0, help="0 = none; else steps at finetune_image_size without noise")
    finetune_image_size: int = flag(0, help="0 = image_size")
    # Where things go (AIP_* variables from Vertex AI override the defaults)
    output_dir: str = flag("runs/train", help="model, eval.json and (by default) checkpoints and logs")
    checkpoint_dir: str = flag("", help="default: $AIP_CHECKPOINT_DIR or <output_dir>/checkpoints")
    tensorboard_dir: str = flag("", help="default: $AIP_TENSORBOARD_LOG_DIR or <output_dir>/logs")
    saved_model: bool = flag(True, help="also export saved_model/ (serving signatures; needs TensorFlow); false: "
                                 "model.keras only, what predict, classify and the next iteration read")
    seed: int = flag(0, help="seed of initialisation and input order")
    shuffle_buffer: int = flag(10000, help="tf.data shuffle buffer (records)")
    verbose: int = flag(2, help="Keras fit verbosity: 0 silent, 1 progress bar, 2 one line per epoch")

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
                 labeled_split=splits.TRAIN, eval_split=splits.TEST, mode="online", precision="float32"),
    # ImageNet as the original's scripts run it (main.py defaults; local_scripts/imagenet/train.sh for
    # B7): batch 4096, 350 epochs of the labeled data (109,474 steps).
    "imagenet": dict(model="efficientnet-b7", image_size=600, batch_size=4096, unlabel_ratio=3,
                     train_steps=109474, steps_per_epoch=5000, optimizer="rmsprop", learning_rate=0.016,
                     lr_schedule="exponential", warmup_epochs=5.0, decay_epochs=2.4, weight_decay=1e-5,
                     label_smoothing=0.1, randaugment_ops=2, randaugment_magnitude=27,
                     input_noise="imagenet",
                     stochastic_depth_rate=0.2, ema_momentum=0.9999, labeled_split=splits.TRAIN,
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


def build_parser(prog: str = "python -m trainer.task") -> argparse.ArgumentParser:
    """--preset, then one flag per TrainConfig field (noisystudent/typed_flags.py), each laid over the preset."""
    parser = argparse.ArgumentParser(
        prog=prog, description="Train a teacher or a noisy student (Keras 3).",
        epilog="Presets: " + ", ".join(PRESETS) + ". Flags override the preset's fields.")
    parser.add_argument("--preset", choices=sorted(PRESETS), help="start from a dataset preset")
    return add_flags(parser, TrainConfig, only_given=True, default_note=" unless the preset sets it")


def config_from_args(argv: Optional[Sequence[str]] = None) -> TrainConfig:
    overrides = vars(build_parser().parse_args(argv))
    return get_config(overrides.pop("preset"), **overrides)


def recipe(preset: str, overrides: Optional[dict] = None, **fields) -> TrainConfig:
    """What the loop and its references train with: the preset with `fields` (data, splits, seed), then an
    experiment's `train` section (`overrides`: the loop's --train_args land there)."""
    config = dataclasses.replace(get_config(preset, **fields), **(overrides or {}))
    config.validate()
    return config

