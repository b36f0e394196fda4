"""`noisystudent evaluate`: a model's accuracy on clean, corrupted and adversarial images, as a Beam job.

    noisystudent evaluate --model runs/demo/seed0/loop/iter2/student/model.keras --data runs/demo/seed0/data \\
        --reference runs/demo/seed0/loop/iter0/teacher/model.keras --output_dir runs/demo/robustness

Clean top-1 and top-5; top-1 under each ImageNet-C corruption at each severity (noisystudent/corruptions.py,
deterministic per image); with --reference, each corruption's error relative to the reference model's
on the same images (CE_c = sum_s err_model / sum_s err_reference, ImageNet-C's definition with the
reference in AlexNet's place) and mCE, their mean; FGSM top-1 at each --fgsm_epsilons (one signed-gradient
step of the model's own cross-entropy, in whole pixels of its 0-255 input, as the paper's FGSM table).
Written to <output_dir>/evaluate.json and evaluate.md; summary.json proves, for every model and condition,
count(in) = count(scored) + count(dead letter) (+ the images past --max_images).

The same job on DirectRunner here and on Dataflow (`noisystudent dataflow evaluate ... -- <these flags>`),
so a 50,000-image validation set x 12 corruptions x 5 severities runs on a fleet like predict: the split
is read once (predict's reader), decoded to the model's input once per image, then fanned out to one
element per (chunk, condition) and spread over the workers (the corruptions are the cost: up to 1.6 s
an image at 224 px); each condition's images go to the model through predict's own handler
(teacher_inference.py) as lossless PNGs, each model attacked through its own gradient for FGSM.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import posixpath
from typing import Iterator, Optional, Sequence

import apache_beam as beam
import numpy as np
from apache_beam.ml.inference.base import PredictionResult, RunInference

from beam_pipelines import dataset_output as out
from beam_pipelines.job_runner import JobPlan, run_job
from beam_pipelines.pipeline_options import beam_flags_epilog, counter_value, is_dry_run, normalise_beam_args
from beam_pipelines.predict import DEAD, ReadImageChunks
from beam_pipelines.teacher_inference import ImageChunk, KerasTeacherHandler
from beam_pipelines.tfrecord_reader import ALLOW_DAMAGED_HELP
from noisystudent import corruptions, dataset_dir, records, robustness, splits
from noisystudent.typed_flags import add_flags, flag, parse

RESULTS_JSON, RESULTS_MD = "evaluate.json", "evaluate.md"
INPUT_DEAD = "input"  # the dead letters' bucket for records no model saw (bad records, undecodable, unlabeled)
MODEL, REFERENCE = "model", "reference"

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class EvaluateConfig:
    """The evaluate job's knobs (also its flags: noisystudent/typed_flags.py)."""

    model: str = flag(help="The model to evaluate (model.keras).")
    data: str = flag(help="Dataset dir (with summary.json) or glob of image records with labels.")
    output_dir: str = flag(help="Where evaluate.json, evaluate.md and summary.json go (gs:// works).")
    split: str = flag(splits.TEST, help="Split of --data.")
    reference: str = flag("", help="A second model.keras (e.g. the teacher): the corruption errors are normalised "
                                   "by its own, on the same images (CE, mCE).")
    corruptions: str = flag("all", help="Comma-separated ImageNet-C corruptions, 'all', or '' for none "
                                        f"({', '.join(corruptions.CORRUPTIONS)}).")
    severities: str = flag("1,2,3,4,5", help="Severities of each corruption (ImageNet-C's 1 to 5).")
    fgsm_epsilons: str = flag("1,2,4,8,16", help="FGSM step sizes in whole pixels of the 0-255 input; '' for none.")
    max_images: int = flag(0, help="Evaluate the first N images by id (0: all).")
    center_crop: bool = flag(False, help="The original's ImageNet eval crop before everything (as predict's).")
    batch_size: int = flag(256, help="Images per model call (and per element of the fan-out).")
    seed: int = flag(0, help="Seed of the corruptions' randomness (with each image's id).")
    allow_damaged_input: bool = flag(False, help=ALLOW_DAMAGED_HELP)
    overwrite: bool = flag(False, help=out.OVERWRITE_HELP)

    def conditions(self) -> tuple[list[str], list[int], list[float]]:
        """(corruption names, severities, FGSM steps in pixels), parsed; a bad one is refused naming its flag."""
        return (corruptions.parse_names(self.corruptions), corruptions.parse_severities(self.severities),
                robustness.parse_epsilons(self.fgsm_epsilons))

    def validate(self) -> None:
        self.conditions()
        if self.batch_size < 1:
            raise ValueError(f"--batch_size must be >= 1, got {self.batch_size}")
        if self.max_images < 0:
            raise ValueError(f"--max_images must be >= 0 (0: all), got {self.max_images}")

    @property
    def roles(self) -> dict[str, str]:
        """model / reference -> path."""
        return {MODEL: self.model, **({REFERENCE: self.reference} if self.reference else {})}


def build_parser() -> argparse.ArgumentParser:
    return add_flags(argparse.ArgumentParser(prog="noisystudent evaluate", description=__doc__.split("\n\n")[0],
                                             epilog=__doc__.split("\n\n", 2)[2] + "\n" + beam_flags_epilog(),
                                             formatter_class=argparse.RawDescriptionHelpFormatter), EvaluateConfig)


@dataclasses.dataclass
class PixelChunk:
    """Decoded images of one input chunk at the model's input size: what the fan-out carries."""

    source: str
    image_ids: list[str]
    labels: list[int]
    pixels: np.ndarray  # uint8 [N, size, size, 3]


class DecodeForEvaluation(beam.DoFn):
    """ImageChunk -> PixelChunk at the model's input size (read from the model file on the worker), once
    per image for every condition; unlabeled and undecodable images to the dead letters, images past
    --max_images counted (the 'totals' output)."""

    TOTALS = "totals"

    def __init__(self, model_path: str, center_crop: bool):
        self._model_path, self._center_crop = model_path, center_crop
        self._selected_of, self._selected = None, None

    def setup(self):
        from noisystudent.teacher import model_input_size

        self._size = model_input_size(self._model_path)

    def process(self, chunk: ImageChunk, first_ids: Optional[list] = None) -> Iterator:
        from noisystudent.host_images import HostDecodeError, model_input

        if first_ids is not None and self._selected_of is not first_ids:
            self._selected_of, self._selected = first_ids, frozenset(first_ids)
        ids, labels, pixels, skipped = [], [], [], 0
        for image_id, encoded, label in zip(chunk.image_ids, chunk.encoded, chunk.labels):
            if first_ids is not None and image_id not in self._selected:
                skipped += 1
                continue
            if label == records.UNLABELED:
                yield beam.pvalue.TaggedOutput(DEAD, {"id": image_id, "source": chunk.source, "split": INPUT_DEAD,
                                                      "reason": "the record has no label: evaluate needs labeled "
                                                                "images"})
                continue
            try:
                pixels.append(model_input(encoded, self._size, self._center_crop))
            except HostDecodeError as e:
                yield beam.pvalue.TaggedOutput(DEAD, {"id": image_id, "source": chunk.source, "split": INPUT_DEAD,
                                                      "reason": f"undecodable image: {e}"})
                continue
            ids.append(image_id)
            labels.append(label)
        if skipped:
            yield beam.pvalue.TaggedOutput(self.TOTALS, {"totals": {"not_selected": skipped}})
        if ids:
            yield PixelChunk(chunk.source, ids, labels, np.stack(pixels))


class CorruptChunk(beam.DoFn):
    """(condition, PixelChunk) -> the ImageChunk of its images under that condition, as lossless PNGs for
    predict's handler; FGSM's elements leave on the 'attack' output (each model attacks them itself)."""

    ATTACK = "attack"

    def __init__(self, seed: int):
        self._seed = seed

    def process(self, element: tuple[str, PixelChunk]) -> Iterator:
        condition, chunk = element
        if condition == robustness.FGSM:
            yield beam.pvalue.TaggedOutput(self.ATTACK, chunk)
            return
        pixels = chunk.pixels if condition == robustness.CLEAN else robustness.corrupted_batch(
            chunk.pixels, chunk.image_ids, *robustness.parse_corruption_key(condition), self._seed)
        yield _image_chunk(chunk, pixels, condition)


class AttackFGSM(beam.DoFn):
    """PixelChunk -> one ImageChunk per epsilon: the images moved along the sign of this model's own loss
    gradient (whole pixels, so the PNGs hold them exactly)."""

    def __init__(self, model_path: str, flag_name: str, epsilons: Sequence[float]):
        self._model_path, self._flag, self._epsilons = model_path, flag_name, list(epsilons)

    def setup(self):
        self._scorer = robustness.Scorer(self._model_path, self._flag)

    def process(self, chunk: PixelChunk) -> Iterator[ImageChunk]:
        moved = self._scorer.fgsm(chunk.pixels.astype(np.float32), np.asarray(chunk.labels, np.int64), self._epsilons)
        for eps, images in moved.items():
            yield _image_chunk(chunk, np.rint(images).astype(np.uint8), robustness.fgsm_key(eps))


def _image_chunk(chunk: PixelChunk, pixels: np.ndarray, condition: str) -> ImageChunk:
    from noisystudent.image_codec import encode_png

    return ImageChunk(chunk.source, list(chunk.image_ids), [encode_png(p) for p in pixels],
                      labels=list(chunk.labels), condition=condition)


class TallyChunk(beam.DoFn):
    """PredictionResult(ImageChunk, ChunkLabels) -> correct counts per condition, once per bundle (the
    'totals' output), and a dead letter per image whose output is not finite."""

    TOTALS = "totals"

    def __init__(self, role: str):
        self._role = role

    def start_bundle(self):
        self._tally = robustness.Tally()

    def finish_bundle(self):
        if self._tally.counts:
            yield beam.transforms.window.GlobalWindows.windowed_value(
                {"totals": {"tally": {self._role: self._tally.counts}}})

    def process(self, result: PredictionResult) -> Iterator:
        chunk: ImageChunk = result.example
        probs = result.inference.probabilities
        good = np.isfinite(probs).all(axis=1)
        for row in np.flatnonzero(~good):
            yield beam.pvalue.TaggedOutput(DEAD, {
                "id": chunk.image_ids[row], "source": chunk.source, "split": f"{self._role} {chunk.condition}",
                "reason": result.inference.errors.get(int(row), f"{self._role} output is not finite")})
        if good.any():
            self._tally.add(chunk.condition, probs[good], np.asarray(chunk.labels)[good])


def run(argv: Optional[Sequence[str]] = None, save_main_session: bool = True,
        test_pipeline: Optional[beam.Pipeline] = None) -> dict:
    """The command line: flags -> EvaluateConfig -> `run_config`; prints the table."""
    config, beam_args = parse(EvaluateConfig, build_parser(), argv)
    summary = run_config(config, beam_args, save_main_session, test_pipeline)
    if "evaluation" in summary:
        print(robustness.format_markdown(summary["evaluation"]))
        print(f"\nresults: {posixpath.join(config.output_dir, RESULTS_JSON)}, "
              f"{posixpath.join(config.output_dir, RESULTS_MD)}")
    return summary


def run_config(config: EvaluateConfig, beam_args: Sequence[str] = (), save_main_session: bool = True,
               test_pipeline: Optional[beam.Pipeline] = None) -> dict:
    """Run the job; returns the summary written to <output_dir>/summary.json (with the figures under
    'evaluation', also written as evaluate.json)."""
    config.validate()
    dry_run = is_dry_run(normalise_beam_args(beam_args))
    inputs = dataset_dir.resolve_input(config.data, config.split, dry_run)
    if not dry_run:
        _check_inputs(config, inputs)
    plan = JobPlan(config.output_dir, {}, config.overwrite, build=lambda p: _build(p, config, inputs),
                   finish=lambda summary, result: _finish(summary, result, config, inputs),
                   other_outputs=(RESULTS_JSON, RESULTS_MD), inputs={"--data": inputs.guarded})
    return run_job(plan, beam_args, save_main_session, test_pipeline)


def _check_inputs(config: EvaluateConfig, inputs: dataset_dir.InputFiles) -> None:
    """Before the job: a split its summary.json declares unlabeled, and models of other class counts or input
    sizes, are refused naming the flag."""
    from noisystudent.teacher import check_class_count, model_input_size

    if not dataset_dir.is_glob(config.data):
        declared = dataset_dir.load_summary(config.data).splits.get(config.split)
        if declared and declared.records and set(declared.labels) == {records.UNLABELED}:
            raise ValueError(f"--data {config.data} split {config.split!r}: its {declared.records:,} records have "
                             "no label (summary.json); evaluate needs labeled images")

    sizes = {}
    for role, path in config.roles.items():
        check_class_count(path, f"--{role}", inputs.num_classes, config.data, "--data")
        sizes[role] = model_input_size(path)
        if sizes[role] is None:
            raise ValueError(f"--{role} {path}: its input has no fixed square size (evaluate decodes each image once, "
                             "to the size every condition and model is scored at); save it with one, e.g. "
                             "keras.Input((32, 32, 3))")
    if len(set(sizes.values())) > 1:
        raise ValueError(f"--reference {config.reference} takes {sizes[REFERENCE]}-px images, --model "
                         f"{sizes[MODEL]}-px: both are scored on the same corrupted pixels")


def _build(p: beam.Pipeline, config: EvaluateConfig, inputs: dataset_dir.InputFiles) -> None:
    names, severities, epsilons = config.conditions()
    shared = robustness.condition_keys(names, severities, [])  # corrupted once, scored by every model
    fanned_out = shared + ([robustness.FGSM] if epsilons else [])
    reader = ReadImageChunks(config.batch_size, inputs.declared_per_file, config.allow_damaged_input,
                             namespace="evaluate")
    chunks = (p | "ListInputFiles" >> beam.Create(inputs.files)
              | "SpreadFiles" >> beam.Reshuffle()
              | "ReadImageChunks" >> beam.ParDo(reader).with_outputs(DEAD, main="chunks"))
    side = {}
    if config.max_images:
        side["first_ids"] = beam.pvalue.AsSingleton(
            chunks.chunks | "ImageIds" >> beam.FlatMap(lambda c: c.image_ids)
            | "FirstIds" >> beam.combiners.Top.Smallest(config.max_images))
    decoded = chunks.chunks | "Decode" >> beam.ParDo(DecodeForEvaluation(config.model, config.center_crop), **side) \
        .with_outputs(DEAD, DecodeForEvaluation.TOTALS, main="pixels")
    conditions = (decoded.pixels
                  | "FanOut" >> beam.FlatMap(lambda chunk: [(c, chunk) for c in fanned_out])
                  | "SpreadConditions" >> beam.Reshuffle()  # the corruptions' cost, over every worker
                  | "Corrupt" >> beam.ParDo(CorruptChunk(config.seed)).with_outputs(CorruptChunk.ATTACK,
                                                                                    main="images"))
    dead, reports = [chunks[DEAD], decoded[DEAD]], [decoded[DecodeForEvaluation.TOTALS]]
    for role, path in config.roles.items():
        scored = [conditions.images]
        if epsilons:
            scored.append(conditions[CorruptChunk.ATTACK]
                          | f"FGSM[{role}]" >> beam.ParDo(AttackFGSM(path, f"--{role}", epsilons)))
        handler = KerasTeacherHandler(path, batch_size=config.batch_size, what=f"evaluate: {role} scored")
        tallied = (scored | f"AllImages[{role}]" >> beam.Flatten()
                   | f"Score[{role}]" >> RunInference(handler)
                   | f"Tally[{role}]" >> beam.ParDo(TallyChunk(role)).with_outputs(DEAD, main="totals"))
        dead.append(tallied[DEAD])
        reports.append(tallied.totals)
    dead_reports = (dead | "AllDeadLetters" >> beam.Flatten()
                    | "WriteDeadLetters" >> out.WriteDeadLetters(config.output_dir, INPUT_DEAD))
    _ = ((dead_reports, *reports) | "AllReports" >> beam.Flatten()
         | "WriteReport" >> out.WriteReport(config.output_dir))


def _finish(summary: dict, result, config: EvaluateConfig, inputs: dataset_dir.InputFiles) -> dict:
    """Prove every (model, condition) accounts for every record in, then write evaluate.json / .md."""
    names, severities, epsilons = config.conditions()
    keys = robustness.condition_keys(names, severities, epsilons)
    input_records = inputs.count_in(counter_value(result, "evaluate", "records_read") or 0, "--data")
    totals = summary.pop("totals", {})
    counts = totals.get("tally", {})
    dead = summary["dead_letter_by_split"]
    balances = [(f"{role} {key}", input_records, {
        "not selected (--max_images)": totals.get("not_selected", 0), "dead_letter_input": dead.get(INPUT_DEAD, 0),
        "scored": counts.get(role, {}).get(key, {}).get("count", 0), "dead_letter": dead.get(f"{role} {key}", 0)})
        for role in config.roles for key in keys]
    out.check_accounting(config.output_dir, summary, {}, balances=balances)
    num_images = counts.get(MODEL, {}).get(robustness.CLEAN, {}).get("count", 0)
    if not num_images:
        dead_file = posixpath.join(config.output_dir, out.DEAD_LETTER_FILE)
        raise ValueError(f"--data {config.data} split {config.split!r}: no image could be evaluated; all "
                         f"{summary['dead_letter']:,} went to {dead_file}{_first_reason(dead_file)}")
    tallies = {role: robustness.Tally(counts[role]) for role in config.roles}
    evaluation = robustness.evaluation_result(tallies, names, severities, epsilons)
    evaluation.update(model=config.model, reference=config.reference or None, data=config.data, split=config.split,
                      num_images=num_images, seed=config.seed)
    import tensorflow as tf

    with tf.io.gfile.GFile(posixpath.join(config.output_dir, RESULTS_JSON), "w") as f:
        json.dump(evaluation, f, indent=2)
    with tf.io.gfile.GFile(posixpath.join(config.output_dir, RESULTS_MD), "w") as f:
        f.write(robustness.format_markdown(evaluation) + "\n")
    summary.update(job="evaluate", input=config.data, input_files=len(inputs.files), input_records=input_records,
                   evaluated=num_images, evaluation=evaluation)
    log.info("%d records: %d evaluated under %d conditions by %s, %d to the dead letter file", input_records,
             num_images, len(keys), " and ".join(config.roles), summary["dead_letter"])
    return summary


def _first_reason(dead_file: str) -> str:
    import tensorflow as tf

    if not tf.io.gfile.exists(dead_file):
        return ""
    with tf.io.gfile.GFile(dead_file) as f:
        line = f.readline()
    return f" (e.g. {json.loads(line)['reason']})" if line.strip() else ""


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    run()
