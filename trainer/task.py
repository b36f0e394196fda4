"""Train a teacher (supervised) or a noisy student (offline / online labels).

    python -m trainer.task --preset digits --labeled_data runs/demo/data --output_dir runs/teacher
    python -m trainer.task --preset svhn --mode offline --labeled_data gs://b/svhn \\
        --unlabeled_data 'gs://b/pseudo/train-*.tfrecord' --output_dir gs://b/student

The Vertex AI entry point: AIP_MODEL_DIR, AIP_CHECKPOINT_DIR and
AIP_TENSORBOARD_LOG_DIR are honoured when set. Writes into the model dir:
model.keras, saved_model/ (signatures in trainer/export.py), eval.json,
train_config.json, history.json. A killed job started again with the same
flags resumes from its last checkpoint (keras BackupAndRestore).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import posixpath
import time
from typing import Callable, Optional, Sequence

import keras
import tensorflow as tf

from model import build_model, count_params
from noisystudent import dataset_dir, records, run_layout
from noisystudent.errors import DamagedInputError, op_message
from noisystudent.teacher import check_class_count, load_keras_model, load_keras_teacher
from trainer import cluster as cluster_lib, data, evaluate
from trainer.augment import RandAugment
from trainer.cluster import Cluster, SharedBackupAndRestore
from trainer.config import TrainConfig, config_from_args
from trainer.crop_noise import InceptionCropFlip, SmallImageNoise
from trainer.export import export_from_keras_file, export_saved_model
from trainer.noisy_student import NoisyStudent
from trainer.optimization import compute_precision, make_optimizer, make_strategy, peak_learning_rate

log = logging.getLogger(__name__)


@dataclasses.dataclass
class DataInfo:
    num_classes: int
    class_names: Optional[list[str]]
    labeled_files: list[str]
    num_train_images: int  # labeled images: the schedule's epoch (0 when unknown, a glob)


def inspect_labeled_data(config: TrainConfig) -> DataInfo:
    """Class count and names from summary.json; refuses empty data and out-of-range labels."""
    files = dataset_dir.resolve_files(config.labeled_data, config.labeled_split)
    num_classes, class_names = config.num_classes, None
    num_train_images = config.num_train_images
    if not dataset_dir.is_glob(config.labeled_data):
        summary = dataset_dir.load_summary(config.labeled_data)
        split = summary.split(config.labeled_split)
        if split.records == 0:
            raise ValueError(f"config field 'labeled_data': split {config.labeled_split!r} of "
                             f"{config.labeled_data} is empty")
        num_train_images = num_train_images or split.records
        data_classes, class_names = summary.num_classes, summary.class_names
        labels = sorted(split.labels)
        if data_classes and num_classes and num_classes != data_classes:
            raise ValueError(f"config field 'num_classes': {num_classes} does not match "
                             f"{config.labeled_data} ({data_classes} classes)")
        num_classes = num_classes or data_classes or (max(labels) + 1)
        bad = [l for l in labels if not 0 <= l < num_classes]
        if bad:
            raise ValueError(f"{config.labeled_data} split {config.labeled_split!r}: labels {bad} are "
                             f"outside 0..{num_classes - 1} (unlabeled records hold -1)")
    if not num_classes:
        raise ValueError("config field 'num_classes': needed when labeled_data is a glob")
    return DataInfo(num_classes, class_names, files, num_train_images)


def check_unlabeled_classes(config: TrainConfig, info: DataInfo) -> None:
    """Before any model is built: the pseudo-labels' width (offline) or the teacher's classes (online)
    match the labeled data's, naming both numbers and both files."""
    if config.mode == "online":
        check_class_count(config.teacher, "--teacher", info.num_classes, config.labeled_data, "--labeled_data")
        return
    if config.mode != "offline":
        return
    inputs = dataset_dir.resolve_input(config.unlabeled_data, config.unlabeled_split)
    width, where = inputs.num_classes, "its summary.json"
    if not width and inputs.files:
        try:
            first = next(iter(tf.data.TFRecordDataset(inputs.files[0]).take(1).as_numpy_iterator()), None)
        except tf.errors.DataLossError as e:
            raise DamagedInputError(f"config field 'unlabeled_data': {inputs.files[0]} is damaged: "
                                    f"{op_message(e.message)}") from None
        if first is not None:
            width = int(records.parse_pseudo_labeled(first).probabilities.shape[0])
            where = f"its first record, in {inputs.files[0]}"
    if width and width != info.num_classes:
        raise ValueError(f"config field 'unlabeled_data': {config.unlabeled_data} holds {width}-class pseudo-labels "
                         f"({where}), but labeled_data {config.labeled_data} has {info.num_classes} classes: "
                         "were they labelled by a teacher of other data?")


def check_student_size(config: TrainConfig, teacher: Optional[keras.Model], num_classes: int) -> None:
    """The student must be equal-or-larger than its teacher, unless allowed."""
    if teacher is None:
        return
    student_params = count_params(config.model, num_classes)
    teacher_params = teacher.count_params()
    if student_params < teacher_params and not config.allow_smaller_student:
        raise ValueError(
            f"config field 'model': student {config.model} ({student_params:,} parameters) is smaller "
            f"than the teacher {teacher.name} ({teacher_params:,}); Noisy Student needs an equal-or-larger "
            "student (pass --allow_smaller_student true to force)")


def load_teacher(config: TrainConfig) -> Optional[keras.Model]:
    """The online teacher (noisystudent.teacher, shared with predict and classify), frozen."""
    return load_keras_teacher(config.teacher, "--teacher") if config.teacher else None


def build_student(config: TrainConfig, num_classes: int, image_size: int,
                  init_checkpoint: str = "") -> keras.Model:
    model = build_model(
        config.model, num_classes, input_shape=(image_size, image_size, 3),
        dropout_rate=None if config.dropout_rate < 0 else config.dropout_rate,
        stochastic_depth_rate=config.stochastic_depth_rate,
        bn_momentum=None if config.bn_momentum < 0 else config.bn_momentum,
        small_image=config.small_image_model, normalization=config.normalization)
    if init_checkpoint:
        initialize_from(model, init_checkpoint)
    if config.train_head_only:
        from trainer.published_checkpoint import freeze_all_but_head
        freeze_all_but_head(model)
    return model


def initialize_from(model: keras.Model, checkpoint: str) -> None:
    """Weights from a .keras file (matching layers) or an original TF checkpoint; a new head if
    the class count differs."""
    if checkpoint.endswith(".keras"):
        source = load_keras_model(checkpoint, "--init_checkpoint")
        same_head = source.output_shape[-1] == model.output_shape[-1]
        for layer in model.layers:
            if layer.weights and (layer.name != "predictions" or same_head):
                layer.set_weights(source.get_layer(layer.name).get_weights())
        log.info("initialised %s from %s%s", model.name, checkpoint, "" if same_head else " (new head)")
        return
    from trainer.published_checkpoint import load_original_checkpoint
    reader_classes = None
    try:
        shapes = tf.train.load_checkpoint(checkpoint).get_variable_to_shape_map()
        reader_classes = shapes.get(f"{model.name}/head/dense/bias", [None])[0]
    except (tf.errors.NotFoundError, ValueError) as e:
        raise FileNotFoundError(f"config field 'init_checkpoint': cannot read {checkpoint} ({e})") from None
    report = load_original_checkpoint(model, checkpoint,
                                      skip_head=reader_classes != model.output_shape[-1])
    log.info("initialised %s from %s: %d weights (%d EMA), head %s", model.name, checkpoint, report.loaded,
             report.used_ema, "new" if report.skipped else "loaded")


def make_noise(config: TrainConfig) -> Optional[Callable[[tf.Tensor], tf.Tensor]]:
    """The input noise on a batch of images: RandAugment, then the preset's crop noise (if any)."""
    steps: list = []
    if config.randaugment_ops > 0:
        steps.append(RandAugment(config.randaugment_ops, config.randaugment_magnitude,
                                 translate_const=config.randaugment_translate_const,
                                 cutout_const=config.randaugment_cutout_const,
                                 cutout_op=config.randaugment_cutout_op, seed=config.seed))
    if config.input_noise == "svhn":
        steps.append(SmallImageNoise(config.image_size, seed=config.seed + 1))
    if len(steps) <= 1:
        return steps[0] if steps else None
    return lambda images: functools.reduce(lambda x, step: step(x), steps, images)


def make_training_decoder(config: TrainConfig) -> Optional[data.Decoder]:
    """Per-image noise at decode time: the original's ImageNet crop and flip (input_noise=imagenet)."""
    return InceptionCropFlip(config.image_size, seed=config.seed + 2) if config.input_noise == "imagenet" else None


HOST_SEED_STRIDE = 1000  # host i draws its noise from seed + 1000 i: the same seed, but not the same noise


def make_training_data(config: TrainConfig, info: DataInfo, cluster: Cluster = Cluster()) -> tf.data.Dataset:
    """This host's part of every step: its share of the global batch, from its own files."""
    shard = (cluster.process_id, cluster.num_processes)
    config = dataclasses.replace(config, seed=config.seed + HOST_SEED_STRIDE * cluster.process_id,
                                 batch_size=cluster.local_batch(config.batch_size))
    augment, decode = make_noise(config), make_training_decoder(config)
    labeled = data.labeled_images(info.labeled_files, info.num_classes, config.image_size,
                                  config.batch_size, augment if config.augment_labeled else None,
                                  config.shuffle_buffer, config.seed,
                                  decode=decode if config.augment_labeled else None, shard=shard)
    unlabeled = None
    if config.mode != "supervised":
        files = dataset_dir.resolve_files(config.unlabeled_data, config.unlabeled_split)
        if not files:
            raise ValueError(f"config field 'unlabeled_data': split {config.unlabeled_split!r} of "
                             f"{config.unlabeled_data} holds no records (did the selection keep nothing? "
                             "see its stats.json; lower --min_threshold)")
        batch = config.batch_size * config.unlabel_ratio
        if config.mode == "offline":
            unlabeled = data.pseudo_labeled_images(files, info.num_classes, config.image_size, batch,
                                                   augment, unlabeled_prob_format(config),
                                                   config.shuffle_buffer, config.seed, decode=decode,
                                                   shard=shard)
        else:  # the teacher sees the image as it would label it offline (predict --center_crop)
            unlabeled = data.unlabeled_image_pairs(
                files, config.image_size, batch, augment, config.shuffle_buffer, config.seed,
                clean_decode=data.resize_decoder(config.image_size, config.eval_center_crop), decode=decode,
                shard=shard)
    return data.training_batches(labeled, unlabeled, config.mode)


def unlabeled_prob_format(config: TrainConfig) -> str:
    """The selection job records its probability format in summary.json."""
    if dataset_dir.is_glob(config.unlabeled_data):
        return "float32"
    return dataset_dir.load_summary(config.unlabeled_data).prob_format


class ProgressLog(keras.callbacks.Callback):
    """One JSON line per epoch in <model_dir>/progress.jsonl: epoch, step, metrics, time."""

    def __init__(self, path: str, steps_per_epoch: int, train_steps: int):
        super().__init__()
        self.path, self.steps_per_epoch, self.train_steps = path, steps_per_epoch, train_steps
        self._start = time.time()

    def on_epoch_end(self, epoch, logs=None):
        entry = {"epoch": epoch + 1, "step": min((epoch + 1) * self.steps_per_epoch, self.train_steps),
                 "seconds": round(time.time() - self._start, 1),
                 **{k: float(v) for k, v in (logs or {}).items()}}
        with tf.io.gfile.GFile(self.path, "a") as f:
            f.write(json.dumps(entry) + "\n")


class StopAtStep(keras.callbacks.Callback):
    """Ends training after exactly `train_steps` steps, inside the last epoch when steps_per_epoch does
    not divide them (the original's TPUEstimator runs max_steps exactly: main.py `train_steps`)."""

    def __init__(self, train_steps: int, steps_per_epoch: int):
        super().__init__()
        self.train_steps, self.steps_per_epoch, self._epoch = train_steps, steps_per_epoch, 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self._epoch * self.steps_per_epoch + batch + 1 >= self.train_steps:
            self.model.stop_training = True


def train(config: TrainConfig, extra_callbacks: Sequence[keras.callbacks.Callback] = ()) -> dict:
    """Train, evaluate and export; returns the evaluation report. `extra_callbacks` run after the trainer's
    own (checkpointing first: they see each epoch's checkpoint written)."""
    config.validate()
    start = time.time()
    cluster = cluster_lib.start()  # before anything touches a device
    keras.utils.set_random_seed(config.seed)  # every host: the same initial weights
    info = inspect_labeled_data(config)
    check_unlabeled_classes(config, info)
    model_dir = config.model_dir()
    if cluster.is_writer:
        tf.io.gfile.makedirs(model_dir)
        with tf.io.gfile.GFile(posixpath.join(model_dir, "train_config.json"), "w") as f:
            json.dump(dataclasses.asdict(config), f, indent=2)

    strategy = make_strategy(config, cluster)
    precision = compute_precision(config)
    keras.mixed_precision.set_global_policy("mixed_bfloat16" if precision == "bfloat16" else "float32")
    scope = strategy.scope() if strategy is not None else _null_scope()
    epochs = -(-config.train_steps // config.steps_per_epoch)  # the last one may be short (StopAtStep)
    with scope:
        teacher = load_teacher(config)
        check_student_size(config, teacher, info.num_classes)
        student = build_student(config, info.num_classes, config.image_size, config.init_checkpoint)
        trainer = NoisyStudent(student, teacher if config.mode == "online" else None,
                               ema_decay=config.ema_momentum)
        trainer.compile(make_optimizer(config, config.train_steps,
                                       num_train_images=info.num_train_images),
                        unlabeled_weight=config.resolved_unlabeled_weight(),
                        label_smoothing=config.label_smoothing, label_type=config.label_type,
                        temperature=config.temperature, weight_decay=config.weight_decay)
    log.info("training %s (%s mode, %d classes, %s) for %d steps: %d labeled + %d unlabeled images per step",
             config.model, config.mode, info.num_classes, precision, config.train_steps,
             config.batch_size, 0 if config.mode == "supervised" else config.batch_size * config.unlabel_ratio)
    callbacks = [
        # double_checkpoint: a kill while latest.weights.h5 is written leaves the previous checkpoint,
        # which the restart falls back to (without it, the damaged file made the restart raise).
        SharedBackupAndRestore(cluster, config.resolved_checkpoint_dir(), double_checkpoint=True,
                               delete_checkpoint=False),
        *([keras.callbacks.TensorBoard(config.resolved_tensorboard_dir(), update_freq="epoch"),
           ProgressLog(posixpath.join(model_dir, "progress.jsonl"), config.steps_per_epoch, config.train_steps)]
          if cluster.is_writer else []),
        StopAtStep(config.train_steps, config.steps_per_epoch),
        *extra_callbacks,
    ]
    try:
        history = trainer.fit(make_training_data(config, info, cluster), epochs=epochs,
                              steps_per_epoch=config.steps_per_epoch, callbacks=callbacks,
                              verbose=config.verbose, shuffle=False)
    except tf.errors.DataLossError as e:  # TensorFlow does not say which file
        inputs = config.labeled_data + (f" or {config.unlabeled_data}" if config.mode != "supervised" else "")
        raise DamagedInputError(f"a training input file in {inputs} is damaged: {op_message(e.message)}") from None
    # NoisyStudent.fit leaves the EMA weights (and BatchNorm statistics) in the student.
    if config.finetune_steps:
        student = finetune_at_resolution(config, info, student, cluster)
    if cluster.is_multi_process:  # from here on process 0 alone: its own copy of the weights
        student = host_copy(config, info, student)
        log.info("process %d of %d: trained weights %s", cluster.process_id, cluster.num_processes,
                 cluster_lib.weights_fingerprint(student))
        if not cluster.is_writer:
            cluster_lib.barrier(cluster, "trained-model-written")
            return {}
    report = write_trained_model(config, info, student, precision, history, start)
    cluster_lib.barrier(cluster, "trained-model-written")  # every host leaves together: Vertex watches host 0
    return report


def write_trained_model(config: TrainConfig, info: DataInfo, student: keras.Model, precision: str,
                        history: keras.callbacks.History, start: float) -> dict:
    """Evaluate once (every test image once), then eval.json, history.json, model.keras and the SavedModel."""
    model_dir = config.model_dir()
    eval_location = config.eval_data or config.labeled_data
    eval_files = dataset_dir.resolve_files(eval_location, config.eval_split)
    eval_size = int(student.input_shape[1])
    eval_ds = data.labeled_images(eval_files, info.num_classes, eval_size, 256, None, repeat=False,
                                  center_crop=config.eval_center_crop)
    report = evaluate.evaluate_model(student, eval_ds, info.class_names)
    report.update(model=config.model, mode=config.mode, eval_data=eval_location, eval_split=config.eval_split,
                  steps=config.train_steps, train_seconds=round(time.time() - start, 1))
    evaluate.write_report(report, posixpath.join(model_dir, run_layout.EVAL_FILE))
    with tf.io.gfile.GFile(posixpath.join(model_dir, "history.json"), "w") as f:
        json.dump({k: [float(x) for x in v] for k, v in history.history.items()}, f)
    keras_path = posixpath.join(model_dir, run_layout.MODEL_FILE)
    student = float32_copy(config, info, student) if precision == "bfloat16" else student
    student.save(keras_path)
    export_dir = posixpath.join(model_dir, "saved_model")
    if config.saved_model and keras.backend.backend() == "tensorflow":
        export_saved_model(student, export_dir, info.class_names)
    elif config.saved_model:  # JAX (TPU jobs): the serving signatures take strings, which only TensorFlow traces
        export_from_keras_file(keras_path, export_dir, info.class_names)
    log.info("%s: top-1 %.4f on %s/%s; model in %s", config.model, report["top1_accuracy"],
             eval_location, config.eval_split, model_dir)
    return report


def rebuilt(config: TrainConfig, info: DataInfo, student: keras.Model) -> keras.Model:
    """The student's weights (this host's copy of each) in a new network, built under the current
    precision policy and distribution."""
    copy = build_student(config, info.num_classes, int(student.input_shape[1]))
    for target, source in zip(copy.weights, student.weights):
        target.assign(cluster_lib.local_value(source))
    return copy


def host_copy(config: TrainConfig, info: DataInfo, student: keras.Model) -> keras.Model:
    """The trained weights in a network on this host's devices only (the trained one spans every host's)."""
    keras.distribution.set_distribution(None)
    return rebuilt(config, info, student)


def float32_copy(config: TrainConfig, info: DataInfo, student: keras.Model) -> keras.Model:
    """The same weights in a float32 network: what is saved, exported and served on any device."""
    keras.mixed_precision.set_global_policy("float32")
    return rebuilt(config, info, student)


def finetune_at_resolution(config: TrainConfig, info: DataInfo, student: keras.Model,
                           cluster: Cluster = Cluster()) -> keras.Model:
    """FixRes: copy the weights into the same network at a larger input, fine-tune on clean labeled data."""
    size = config.finetune_image_size or config.image_size
    bigger = build_student(config, info.num_classes, size)
    bigger.set_weights(student.get_weights())
    finetuner = NoisyStudent(bigger)
    tuned = dataclasses.replace(config, warmup_steps=0, warmup_epochs=0.0, ema_momentum=0.0)
    finetuner.compile(make_optimizer(tuned, config.finetune_steps, peak=peak_learning_rate(config) * 0.1,
                                     num_train_images=info.num_train_images),
                      label_smoothing=config.label_smoothing, weight_decay=config.weight_decay)
    labeled = data.labeled_images(info.labeled_files, info.num_classes, size,
                                  cluster.local_batch(config.batch_size), None, config.shuffle_buffer, config.seed,
                                  shard=(cluster.process_id, cluster.num_processes))
    finetuner.fit(data.training_batches(labeled, None, "supervised"), epochs=1,
                  steps_per_epoch=config.finetune_steps, verbose=config.verbose, shuffle=False)
    log.info("fine-tuned at %dx%d for %d steps", size, size, config.finetune_steps)
    return bigger


class _null_scope:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def run(argv: Optional[Sequence[str]] = None) -> dict:
    return train(config_from_args(argv))


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    run()
