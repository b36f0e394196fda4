"""`noisystudent evaluate`: a model's accuracy on clean, corrupted and adversarial images.

    noisystudent evaluate --model runs/demo/seed0/loop/iter2/student/model.keras --data runs/demo/seed0/data \\
        --reference runs/demo/seed0/loop/iter0/teacher/model.keras --output_dir runs/demo/robustness

Clean top-1 and top-5; top-1 under each ImageNet-C corruption at each severity (noisystudent/corruptions.py,
deterministic per image); with --reference, each corruption's error relative to the reference model's
on the same images (CE_c = sum_s err_model / sum_s err_reference, ImageNet-C's definition with the
reference in AlexNet's place) and mCE, their mean; FGSM top-1 at each --fgsm_epsilons (one signed-gradient
step of the model's own cross-entropy, in pixel units of its 0-255 input, as the paper's FGSM table).
Written to <output_dir>/evaluate.json and evaluate.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import posixpath
import time
from typing import Optional, Sequence

import numpy as np

from noisystudent import corruptions, records, splits
from noisystudent.typed_flags import add_flags, flag, parse

log = logging.getLogger(__name__)
RESULTS_JSON, RESULTS_MD = "evaluate.json", "evaluate.md"


@dataclasses.dataclass(frozen=True)
class EvaluateConfig:
    """The evaluate command's knobs (also its flags: noisystudent/typed_flags.py)."""

    model: str = flag(help="The model to evaluate (model.keras).")
    data: str = flag(help="Dataset dir (with summary.json) or glob of image records with labels.")
    output_dir: str = flag(help="Where evaluate.json and evaluate.md go.")
    split: str = flag(splits.TEST, help="Split of --data.")
    reference: str = flag("", help="A second model.keras (e.g. the teacher): the corruption errors are normalised "
                                   "by its own, on the same images (CE, mCE).")
    corruptions: str = flag("all", help="Comma-separated ImageNet-C corruptions, 'all', or '' for none "
                                        f"({', '.join(corruptions.CORRUPTIONS)}).")
    severities: str = flag("1,2,3,4,5", help="Severities of each corruption (ImageNet-C's 1 to 5).")
    fgsm_epsilons: str = flag("1,2,4,8,16", help="FGSM step sizes in pixels of the 0-255 input; '' for none.")
    max_images: int = flag(0, help="Evaluate the first N images by id (0: all).")
    center_crop: bool = flag(False, help="The original's ImageNet eval crop before everything (as predict's).")
    batch_size: int = flag(256, help="Images per model call.")
    seed: int = flag(0, help="Seed of the corruptions' randomness (with each image's id).")

    def validate(self) -> None:
        corruptions.parse_names(self.corruptions)
        corruptions.parse_severities(self.severities)
        parse_epsilons(self.fgsm_epsilons)
        if self.batch_size < 1:
            raise ValueError(f"--batch_size must be >= 1, got {self.batch_size}")
        if self.max_images < 0:
            raise ValueError(f"--max_images must be >= 0 (0: all), got {self.max_images}")


def parse_epsilons(text: str) -> list[float]:
    try:
        epsilons = [float(e) for e in text.split(",") if e.strip()]
    except ValueError:
        raise ValueError(f"--fgsm_epsilons {text!r}: expected comma-separated numbers (pixels), e.g. 1,2,4,8") from None
    if any(e < 0 for e in epsilons):
        raise ValueError(f"--fgsm_epsilons {text!r}: step sizes are >= 0")
    return epsilons


def build_parser() -> argparse.ArgumentParser:
    return add_flags(argparse.ArgumentParser(prog="noisystudent evaluate", description=__doc__.split("\n\n")[0],
                                             epilog=__doc__.split("\n\n", 2)[2],
                                             formatter_class=argparse.RawDescriptionHelpFormatter), EvaluateConfig)


class Scorer:
    """A model.keras as probabilities and as logits (FGSM's loss is computed from the logits, so a
    saturated softmax does not zero the gradient)."""

    def __init__(self, path: str, flag_name: str):
        import keras

        from noisystudent.teacher import load_keras_model
        from trainer.noisy_student import classifier_head

        self.model = load_keras_model(path, flag_name)
        self.head = classifier_head(self.model)
        self.features = keras.Model(self.model.inputs, self.head.input)
        self.size = int(self.model.input_shape[1])

    def probabilities(self, pixels: np.ndarray, batch_size: int) -> np.ndarray:
        return np.concatenate([np.asarray(self.model(pixels[i:i + batch_size].astype(np.float32), training=False))
                               for i in range(0, len(pixels), batch_size)])

    def fgsm(self, pixels: np.ndarray, labels: np.ndarray, epsilons: Sequence[float]) -> dict[float, np.ndarray]:
        """eps -> the images moved eps pixels along the sign of the loss gradient, clipped to [0, 255]."""
        import tensorflow as tf

        x = tf.convert_to_tensor(pixels.astype(np.float32))
        with tf.GradientTape() as tape:
            tape.watch(x)
            logits = tf.matmul(tf.cast(self.features(x, training=False), tf.float32), self.head.kernel) + self.head.bias
            loss = tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))
        step = np.sign(tape.gradient(loss, x).numpy())
        return {e: np.clip(pixels + e * step, 0, 255).astype(np.float32) for e in epsilons}


class _Tally:
    """Correct top-1 (and top-5) counts per condition, over the chunks."""

    def __init__(self):
        self.top1: dict[str, int] = {}
        self.top5: dict[str, int] = {}
        self.count = 0

    def add(self, key: str, probs: np.ndarray, labels: np.ndarray) -> None:
        self.top1[key] = self.top1.get(key, 0) + int(np.sum(probs.argmax(axis=1) == labels))
        if probs.shape[1] > 5:
            top5 = np.argsort(-probs, axis=1)[:, :5]
            self.top5[key] = self.top5.get(key, 0) + int(np.sum(np.any(top5 == labels[:, None], axis=1)))

    def top1_of(self, key: str) -> float:
        return self.top1[key] / self.count


def read_images(data: str, split: str, max_images: int = 0) -> list[records.ImageRecord]:
    """The split's labeled images, sorted by id (the first --max_images of them)."""
    import tensorflow as tf

    from noisystudent import dataset_dir

    read = [records.parse_image_record(r) for path in dataset_dir.resolve_files(data, split)
            for r in tf.data.TFRecordDataset(path).as_numpy_iterator()]
    unlabeled = [r.image_id for r in read if r.label == records.UNLABELED]
    if unlabeled:
        raise ValueError(f"--data {data} split {split!r}: {len(unlabeled)} images have no label "
                         f"(e.g. {unlabeled[0]}); evaluate needs labeled images")
    read.sort(key=lambda r: r.image_id)
    return read[:max_images] if max_images else read


def score(images: Sequence[records.ImageRecord], scorers: dict[str, "Scorer"], names: Sequence[str],
          severities: Sequence[int], epsilons: Sequence[float], seed: int = 0, center_crop: bool = False,
          batch_size: int = 256) -> dict[str, _Tally]:
    """Every scorer on the same images: clean, each corruption x severity (corrupted once, scored by all),
    and FGSM (each model attacked through its own gradient)."""
    from noisystudent.host_images import model_input

    if not images:
        raise ValueError("no images to evaluate")
    size = next(iter(scorers.values())).size
    for role, scorer in scorers.items():
        if scorer.size != size:
            raise ValueError(f"{role} takes {scorer.size}-px images, the others {size}-px: corruptions are scored "
                             "on the same pixels")
    tallies = {role: _Tally() for role in scorers}
    start = time.time()
    for begin in range(0, len(images), batch_size):
        part = images[begin:begin + batch_size]
        labels = np.array([r.label for r in part], np.int64)
        pixels = np.stack([model_input(r.encoded, size, center_crop) for r in part])
        batches = {"clean": pixels}
        for name in names:
            for severity in severities:
                batches[f"{name}/{severity}"] = np.stack([
                    corruptions.corrupt(p, name, severity, seed, r.image_id) for p, r in zip(pixels, part)])
        for role, scorer in scorers.items():
            tallies[role].count += len(part)
            for key, batch in batches.items():
                tallies[role].add(key, scorer.probabilities(batch, batch_size), labels)
            if epsilons:
                for eps, moved in scorer.fgsm(pixels.astype(np.float32), labels, epsilons).items():
                    tallies[role].add(f"fgsm/{eps:g}", scorer.probabilities(moved, batch_size), labels)
        log.info("evaluate: %d/%d images (%.0f s)", begin + len(part), len(images), time.time() - start)
    return tallies


def scores(tally: _Tally, names: Sequence[str], severities: Sequence[int], epsilons: Sequence[float]) -> dict:
    """One model's figures: clean, corruptions -> name -> severity -> top1, mean_corrupted_top1, fgsm."""
    out = {"clean": {"top1": tally.top1_of("clean")}, "corruptions": {}}
    if "clean" in tally.top5:
        out["clean"]["top5"] = tally.top5["clean"] / tally.count
    for name in names:
        out["corruptions"][name] = {str(s): {"top1": tally.top1_of(f"{name}/{s}")} for s in severities}
    if names:
        out["mean_corrupted_top1"] = float(np.mean([v["top1"] for by_severity in out["corruptions"].values()
                                                    for v in by_severity.values()]))
    out["fgsm"] = {f"{e:g}": {"top1": tally.top1_of(f"fgsm/{e:g}")} for e in epsilons}
    return out


def corruption_errors(model: dict, reference: dict) -> dict[str, Optional[float]]:
    """CE per corruption: the model's summed top-1 error over severities / the reference's (None when the
    reference makes no error on it)."""
    errors = {}
    for name, by_severity in model["corruptions"].items():
        ours = sum(1 - v["top1"] for v in by_severity.values())
        theirs = sum(1 - reference["corruptions"][name][s]["top1"] for s in by_severity)
        errors[name] = ours / theirs if theirs > 0 else None
    return errors


def with_mce(model: dict, reference: dict) -> dict:
    """`model`'s scores with ce (per corruption) and mce against `reference`'s."""
    if not model["corruptions"]:
        return model
    ce = corruption_errors(model, reference)
    defined = [v for v in ce.values() if v is not None]
    return {**model, "ce": ce, "mce": float(np.mean(defined)) if defined else None}


def run_config(config: EvaluateConfig) -> dict:
    """Evaluate; returns what evaluate.json holds."""
    import tensorflow as tf

    config.validate()
    names = corruptions.parse_names(config.corruptions)
    severities = corruptions.parse_severities(config.severities)
    epsilons = parse_epsilons(config.fgsm_epsilons)
    scorers = {"model": Scorer(config.model, "--model")}
    if config.reference:
        scorers["reference"] = Scorer(config.reference, "--reference")
        if scorers["reference"].size != scorers["model"].size:
            raise ValueError(f"--reference {config.reference} takes {scorers['reference'].size}-px images, --model "
                             f"{scorers['model'].size}-px: both are scored on the same corrupted pixels")
    images = read_images(config.data, config.split, config.max_images)
    if not images:
        raise ValueError(f"--data {config.data} split {config.split!r} holds no images")
    log.info("evaluate: %d images x (clean + %d corruptions x %d severities) + FGSM at %s, %s", len(images),
             len(names), len(severities), epsilons or "none", " and ".join(scorers))
    start = time.time()
    tallies = score(images, scorers, names, severities, epsilons, config.seed, config.center_crop, config.batch_size)
    result = scores(tallies["model"], names, severities, epsilons)
    if config.reference:
        reference = scores(tallies["reference"], names, severities, epsilons)
        result = {**with_mce(result, reference), "reference_scores": reference}
    result.update(model=config.model, reference=config.reference or None, data=config.data, split=config.split,
                  num_images=len(images), image_size=scorers["model"].size, seed=config.seed,
                  seconds=round(time.time() - start, 1))
    tf.io.gfile.makedirs(config.output_dir)
    with tf.io.gfile.GFile(posixpath.join(config.output_dir, RESULTS_JSON), "w") as f:
        json.dump(result, f, indent=2)
    with tf.io.gfile.GFile(posixpath.join(config.output_dir, RESULTS_MD), "w") as f:
        f.write(format_markdown(result) + "\n")
    return result


def format_markdown(result: dict) -> str:
    """evaluate.md: clean, each corruption's top-1 per severity (and CE), FGSM."""
    ref = result.get("reference_scores")
    lines = [f"## {result['model']} on {result['data']} ({result['split']}, {result['num_images']:,} images)", "",
             f"- clean top-1: {100 * result['clean']['top1']:.2f}"
             + (f" (reference {100 * ref['clean']['top1']:.2f})" if ref else "")]
    if "mean_corrupted_top1" in result:
        lines.append(f"- mean corrupted top-1: {100 * result['mean_corrupted_top1']:.2f}"
                     + (f" (reference {100 * ref['mean_corrupted_top1']:.2f})" if ref else ""))
    if result.get("mce") is not None:
        lines.append(f"- mCE relative to the reference: {result['mce']:.3f} (below 1: more robust than it)")
    if result["corruptions"]:
        severities = list(next(iter(result["corruptions"].values())))
        lines += ["", "| corruption | " + " | ".join(f"severity {s}" for s in severities) + (" | CE |" if ref else " |"),
                  "|---|" + "---:|" * (len(severities) + (1 if ref else 0))]
        for name, by_severity in result["corruptions"].items():
            cells = [f"{100 * by_severity[s]['top1']:.2f}" for s in severities]
            if ref:
                ce = result["ce"][name]
                cells.append("" if ce is None else f"{ce:.3f}")
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    if result["fgsm"]:
        lines += ["", "| FGSM epsilon (pixels) | " + " | ".join(result["fgsm"]) + " |",
                  "|---|" + "---:|" * len(result["fgsm"]),
                  "| top-1 | " + " | ".join(f"{100 * v['top1']:.2f}" for v in result["fgsm"].values()) + " |"]
    return "\n".join(lines)


def run(argv: Optional[Sequence[str]] = None) -> dict:
    config, rest = parse(EvaluateConfig, build_parser(), argv)
    if rest:
        build_parser().error(f"unknown flag(s) {' '.join(rest)}")
    result = run_config(config)
    print(format_markdown(result))
    print(f"\nresults: {posixpath.join(config.output_dir, RESULTS_JSON)}, "
          f"{posixpath.join(config.output_dir, RESULTS_MD)}")
    return result
