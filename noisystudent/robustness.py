"""The figures of a robustness evaluation, shared by `noisystudent evaluate` (the Beam job) and the benchmark.

- conditions: "clean", "<corruption>/<severity>" (noisystudent/corruptions.py) and "fgsm/<epsilon>";
- `Tally`: correct top-1 (and top-5) and images counted per condition, mergeable (Beam adds the counts
  of every chunk as nested dicts);
- `scores`: a tally -> clean top-1 (top-5), top-1 per corruption and severity, mean corrupted top-1, FGSM
  top-1 per epsilon; `with_mce`: CE per corruption against a reference (ImageNet-C's sum over
  severities of the model's error / the reference's) and mCE, their mean; `format_markdown`: the table;
- `Scorer`: a model.keras as probabilities and as an FGSM attacker (one signed-gradient step of its own
  cross-entropy, computed from the logits of its Dense head, in pixels of its 0-255 input);
- `score`: every scorer on the same images in one process (the benchmark's pass over all models of a seed).
"""

from __future__ import annotations

import logging
import time
from typing import Optional, Sequence

import numpy as np

from noisystudent import corruptions, records

log = logging.getLogger(__name__)
CLEAN = "clean"
FGSM = "fgsm"


def parse_epsilons(text: str) -> list[float]:
    try:
        epsilons = [float(e) for e in text.split(",") if e.strip()]
    except ValueError:
        raise ValueError(f"--fgsm_epsilons {text!r}: expected comma-separated numbers (pixels), e.g. 1,2,4,8") from None
    if any(e < 0 or e != int(e) for e in epsilons):
        raise ValueError(f"--fgsm_epsilons {text!r}: step sizes are whole pixels >= 0 (the attacked images are "
                         "8-bit images, as every image the model sees)")
    return epsilons


def corruption_key(name: str, severity: int) -> str:
    return f"{name}/{severity}"


def fgsm_key(epsilon: float) -> str:
    return f"{FGSM}/{epsilon:g}"


def condition_keys(names: Sequence[str], severities: Sequence[int], epsilons: Sequence[float]) -> list[str]:
    """Every condition an evaluation scores, in the order of its table."""
    return ([CLEAN] + [corruption_key(n, s) for n in names for s in severities]
            + [fgsm_key(e) for e in epsilons])


class Tally:
    """Per condition: images counted, correct top-1 and (with more than 5 classes) correct top-5."""

    def __init__(self, counts: Optional[dict[str, dict[str, int]]] = None):
        self.counts: dict[str, dict[str, int]] = {k: dict(v) for k, v in (counts or {}).items()}

    def add(self, key: str, probs: np.ndarray, labels: np.ndarray) -> None:
        entry = self.counts.setdefault(key, {"count": 0, "top1": 0})
        entry["count"] += len(labels)
        entry["top1"] += int(np.sum(probs.argmax(axis=1) == labels))
        if probs.shape[1] > 5:
            top5 = np.argsort(-probs, axis=1)[:, :5]
            entry["top5"] = entry.get("top5", 0) + int(np.sum(np.any(top5 == labels[:, None], axis=1)))

    def top1_of(self, key: str) -> float:
        entry = self.counts[key]
        return entry["top1"] / entry["count"]


def scores(tally: Tally, names: Sequence[str], severities: Sequence[int], epsilons: Sequence[float]) -> dict:
    """One model's figures: clean, corruptions -> name -> severity -> top1, mean_corrupted_top1, fgsm."""
    clean = tally.counts[CLEAN]
    out = {"clean": {"top1": tally.top1_of(CLEAN)}, "corruptions": {}}
    if "top5" in clean:
        out["clean"]["top5"] = clean["top5"] / clean["count"]
    for name in names:
        out["corruptions"][name] = {str(s): {"top1": tally.top1_of(corruption_key(name, s))} for s in severities}
    if names:
        out["mean_corrupted_top1"] = float(np.mean([v["top1"] for by_severity in out["corruptions"].values()
                                                    for v in by_severity.values()]))
    out["fgsm"] = {f"{e:g}": {"top1": tally.top1_of(fgsm_key(e))} for e in epsilons}
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


def evaluation_result(tallies: dict[str, Tally], names: Sequence[str], severities: Sequence[int],
                      epsilons: Sequence[float]) -> dict:
    """evaluate.json's figures from the tallies of "model" (and "reference"): the model's scores, with its
    CE and mCE and the reference's own scores when there is a reference."""
    result = scores(tallies["model"], names, severities, epsilons)
    if "reference" in tallies:
        reference = scores(tallies["reference"], names, severities, epsilons)
        result = {**with_mce(result, reference), "reference_scores": reference}
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


class Scorer:
    """A model.keras as probabilities and as an FGSM attacker. The attack's loss is computed from the logits of
    the Dense head, so a saturated softmax does not zero the gradient; the input gradient is TensorFlow's
    (tf.GradientTape) or, under KERAS_BACKEND=jax (GPU and TPU workers), jax.grad of the model's stateless call."""

    def __init__(self, path: str, flag_name: str):
        import keras

        from noisystudent.teacher import classifier_head, load_keras_model

        if keras.backend.backend() not in ("tensorflow", "jax"):
            raise ValueError(f"{flag_name} {path}: the FGSM attack takes the input gradient with TensorFlow or JAX, "
                             f"not {keras.backend.backend()} (KERAS_BACKEND)")
        self._jax = keras.backend.backend() == "jax"
        self.model = load_keras_model(path, flag_name)
        self.head = classifier_head(self.model, f"{flag_name} {path}")
        self.features = keras.Model(self.model.inputs, self.head.input)
        self.size = int(self.model.input_shape[1])

    def probabilities(self, pixels: np.ndarray, batch_size: int) -> np.ndarray:
        return np.concatenate([np.asarray(self.model(pixels[i:i + batch_size].astype(np.float32), training=False))
                               for i in range(0, len(pixels), batch_size)])

    def fgsm(self, pixels: np.ndarray, labels: np.ndarray, epsilons: Sequence[float]) -> dict[float, np.ndarray]:
        """eps -> the images moved eps pixels along the sign of the loss gradient, clipped to [0, 255]."""
        x = pixels.astype(np.float32)
        step = np.sign(self._jax_gradient(x, labels) if self._jax else self._tf_gradient(x, labels))
        return {e: np.clip(pixels + e * step, 0, 255).astype(np.float32) for e in epsilons}

    def _tf_gradient(self, x: np.ndarray, labels: np.ndarray) -> np.ndarray:
        import tensorflow as tf

        x = tf.convert_to_tensor(x)
        with tf.GradientTape() as tape:
            tape.watch(x)
            logits = tf.matmul(tf.cast(self.features(x, training=False), tf.float32), self.head.kernel) + self.head.bias
            loss = tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))
        return tape.gradient(loss, x).numpy()

    def _jax_gradient(self, x: np.ndarray, labels: np.ndarray) -> np.ndarray:
        import jax
        import jax.numpy as jnp

        trainable = [v.value for v in self.features.trainable_variables]
        frozen = [v.value for v in self.features.non_trainable_variables]
        kernel, bias = jnp.asarray(self.head.kernel.value, jnp.float32), jnp.asarray(self.head.bias.value, jnp.float32)

        def loss(images):
            features, _ = self.features.stateless_call(trainable, frozen, images, training=False)
            log_probs = jax.nn.log_softmax(features.astype(jnp.float32) @ kernel + bias)
            return -jnp.sum(jnp.take_along_axis(log_probs, jnp.asarray(labels)[:, None], axis=1))

        return np.asarray(jax.grad(loss)(jnp.asarray(x)))


def read_images(data: str, split: str, max_images: int = 0) -> list[records.ImageRecord]:
    """The split's labeled images, sorted by id (the first `max_images` of them); in one process."""
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


def parse_corruption_key(key: str) -> tuple[str, int]:
    """"<corruption>/<severity>" -> (name, severity)."""
    name, severity = key.rsplit("/", 1)
    return name, int(severity)


def corrupted_batch(pixels: np.ndarray, image_ids: Sequence[str], name: str, severity: int, seed: int) -> np.ndarray:
    """uint8 [N, H, W, 3] -> the same images under one corruption at one severity, each by its own id."""
    return np.stack([corruptions.corrupt(p, name, severity, seed, i) for p, i in zip(pixels, image_ids)])


def corrupted_batches(pixels: np.ndarray, image_ids: Sequence[str], names: Sequence[str], severities: Sequence[int],
                      seed: int) -> dict[str, np.ndarray]:
    """Condition key -> the batch under it: clean, then each corruption at each severity."""
    batches = {CLEAN: pixels}
    for name in names:
        for severity in severities:
            batches[corruption_key(name, severity)] = corrupted_batch(pixels, image_ids, name, severity, seed)
    return batches


def score(images: Sequence[records.ImageRecord], scorers: dict[str, Scorer], names: Sequence[str],
          severities: Sequence[int], epsilons: Sequence[float], seed: int = 0, center_crop: bool = False,
          batch_size: int = 256) -> dict[str, Tally]:
    """Every scorer on the same images, in one process: clean, each corruption x severity (corrupted once,
    scored by all), and FGSM (each model attacked through its own gradient)."""
    from noisystudent.host_images import model_input

    if not images:
        raise ValueError("no images to evaluate")
    size = next(iter(scorers.values())).size
    for role, scorer in scorers.items():
        if scorer.size != size:
            raise ValueError(f"{role} takes {scorer.size}-px images, the others {size}-px: corruptions are scored "
                             "on the same pixels")
    tallies = {role: Tally() for role in scorers}
    start = time.time()
    for begin in range(0, len(images), batch_size):
        part = images[begin:begin + batch_size]
        labels = np.array([r.label for r in part], np.int64)
        pixels = np.stack([model_input(r.encoded, size, center_crop) for r in part])
        batches = corrupted_batches(pixels, [r.image_id for r in part], names, severities, seed)
        for role, scorer in scorers.items():
            for key, batch in batches.items():
                tallies[role].add(key, scorer.probabilities(batch, batch_size), labels)
            if epsilons:
                for eps, moved in scorer.fgsm(pixels.astype(np.float32), labels, epsilons).items():
                    tallies[role].add(fgsm_key(eps), scorer.probabilities(moved, batch_size), labels)
        log.info("evaluate: %d/%d images (%.0f s)", begin + len(part), len(images), time.time() - start)
    return tallies
