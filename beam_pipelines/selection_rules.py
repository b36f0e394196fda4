"""Pseudo-label selection semantics (the original filter_unlabel.py), as pure functions.

Per class c, with a histogram of confidences in `num_buckets` buckets
(bucket b holds confidences in [b/(B-1), (b+1)/(B-1)); 101 buckets = 0.00..1.00):

- threshold_c: the highest bucket boundary t >= min_threshold such that the
  count of class-c images with confidence >= t reaches num_image (the cap);
  min_threshold if none does.
- total_c: images of class c with threshold_c <= confidence <= max_prob.
- each kept image gets num_image / total_c expected copies: the floor, plus
  one more with probability equal to the fraction, drawn from a hash of
  (seed, image id) so that a re-run or a retried bundle decides the same.
  Without upsampling the expected copies are capped at 1 (a sample); `max_copies` caps them
  at that many (not the original's: it had no cap).

Decisions use the bucket index, so a confidence sits on the same side of a
threshold everywhere (no float disagreement between passes).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from noisystudent.stable_random import stable_uniform


def boundary(bucket: int, num_buckets: int) -> float:
    """Bucket b's lower edge, as the original computes its thresholds: `i / 100.` in float64
    (filter_unlabel.py:607-608, 101 buckets)."""
    return bucket / (num_buckets - 1)


def bucket_of(confidence: float, num_buckets: int) -> int:
    """The highest bucket whose edge the confidence reaches, compared as the original compares them
    (filter_unlabel.py:416 `prob >= prob_threshold[j]`: the float32 confidence as a float64 against the
    float64 edge, no tolerance). So float32 0.65 (0.6499999762) is in bucket 64, and 0.99999994 in 99."""
    confidence, top = float(confidence), num_buckets - 1
    bucket = min(top, max(0, int(math.floor(confidence * top))))
    while bucket < top and confidence >= boundary(bucket + 1, num_buckets):
        bucket += 1
    while bucket > 0 and confidence < boundary(bucket, num_buckets):
        bucket -= 1
    return bucket


def lowest_bucket_at_or_above(threshold: float, num_buckets: int) -> int:
    """The first edge >= the threshold (the original's `prob_threshold[i] >= FLAGS.min_threshold`,
    filter_unlabel.py:456)."""
    return next((b for b in range(num_buckets) if boundary(b, num_buckets) >= threshold), num_buckets - 1)


@dataclasses.dataclass(frozen=True)
class ClassSelection:
    threshold_bucket: int
    threshold: float
    total: int  # images at or above the threshold (and <= max_prob)
    expected_copies: float  # per kept image


def compute_selection(histograms: np.ndarray, num_image: int, min_threshold: float,
                      upsample: bool, max_copies: int = 0) -> list[ClassSelection]:
    """Thresholds and expected copies per class from [C, B] histograms (already <= max_prob)."""
    num_classes, num_buckets = histograms.shape
    min_bucket = lowest_bucket_at_or_above(min_threshold, num_buckets)
    result = []
    for c in range(num_classes):
        at_or_above = np.cumsum(histograms[c][::-1])[::-1]  # count with bucket >= b
        chosen = min_bucket
        for b in range(num_buckets - 1, min_bucket - 1, -1):
            if at_or_above[b] >= num_image:
                chosen = b
                break
        total = int(at_or_above[chosen]) if chosen < num_buckets else 0
        copies = num_image / total if total else 0.0
        if not upsample:
            copies = min(copies, 1.0)
        if max_copies:
            copies = min(copies, float(max_copies))
        result.append(ClassSelection(chosen, boundary(chosen, num_buckets), total, copies))
    return result


@dataclasses.dataclass(frozen=True)
class OutputSize:
    """What a selection will write, in expectation: records with copies, and unique images kept."""

    written: float
    kept_unique: float

    @property
    def ratio(self) -> float:
        return self.written / self.kept_unique if self.kept_unique else 0.0


def expected_output(selection: list[ClassSelection]) -> OutputSize:
    """Each of a class's `total` images is kept with probability min(1, e) and written e times on average."""
    return OutputSize(sum(s.total * s.expected_copies for s in selection),
                      sum(s.total * min(1.0, s.expected_copies) for s in selection))


NEAR_MISS_BAND = 0.1  # "rejected but close": confidence within this much below its class's threshold


@dataclasses.dataclass(frozen=True)
class NearMissSampling:
    lowest_bucket: int  # the band is [lowest_bucket, threshold_bucket)
    rate: float  # chance a candidate in the band is offered as a sample


def near_miss_sampling(histograms: np.ndarray, selection: list[ClassSelection], wanted: int) -> list[NearMissSampling]:
    """Per class, the band just below the threshold and a sampling rate that offers about 4 x `wanted`
    of its images (the sample keeps the `wanted` most confident of those): a bounded number per class,
    whatever the class's size."""
    num_buckets = histograms.shape[1]
    band = max(1, int(round(NEAR_MISS_BAND * (num_buckets - 1))))
    result = []
    for c, s in enumerate(selection):
        lowest = max(0, s.threshold_bucket - band)
        in_band = int(histograms[c][lowest:s.threshold_bucket].sum())
        result.append(NearMissSampling(lowest, min(1.0, 4 * wanted / in_band) if in_band and wanted else 0.0))
    return result


def copies_for(seed: int, image_id: str, expected: float) -> int:
    """floor(expected) plus one with probability frac(expected), deterministic in (seed, id)."""
    whole = int(math.floor(expected))
    return whole + (1 if stable_uniform(seed, image_id, "copies") < expected - whole else 0)


def selection_table(histograms: np.ndarray, selection: list[ClassSelection], kept_unique: dict,
                    written: dict, class_names=None) -> list[dict]:
    """Per-class rows of stats.json."""
    rows = []
    for c, s in enumerate(selection):
        rows.append({
            "class": c, "name": class_names[c] if class_names else str(c),
            "histogram": histograms[c].astype(int).tolist(), "threshold": round(s.threshold, 4),
            "total_above_threshold": s.total, "expected_copies": round(s.expected_copies, 4),
            "kept_unique": int(kept_unique.get(str(c), 0)), "written": int(written.get(str(c), 0)),
        })
    return rows
