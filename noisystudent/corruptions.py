"""ImageNet-C corruptions (Hendrycks & Dietterich, 2019), as tensorflow-datasets ships them, made
deterministic per image.

    corrupt(pixels, "gaussian_noise", severity=3, seed=0, image_id="mnist/test/000042") -> uint8 pixels

The functions are tensorflow_datasets/image_classification/corruptions.py's (what its
imagenet2012_corrupted builder uses; scikit-image and opencv through tfds' lazy imports), applied to
the image at the model's input size, as ImageNet-C corrupts the 224-px eval crop. They draw from
NumPy's global random state, so each call runs under a lock with that state seeded from (seed,
corruption, severity, image id): the same figures on every re-run and worker.

Left out (LEFT_OUT says why): frost (its frost photographs are files tfds does not ship), motion_blur
and snow (they shell out to the ImageMagick binary, which no pip package provides and Dataflow workers
lack). Changed: impulse_noise, whose scikit-image call draws from its own unseeded generator, gets a
seeded one (the same `random_noise(mode="s&p", amount=c)` with tfds' amounts).

Smaller images: the constants are tuned for 224-px images, and those given in pixels break at 28-32 px
(elastic_transform's displacements of 244 x 0.1 px tear a 32-px digit apart, so its severity 1 changes
more than its 5; defocus_blur's disk of 3-10 px and fog's 256-px plasma map lose their meaning). So
AT_224 (defocus_blur, elastic_transform, fog) run on the image resized to 224 px and back (bilinear,
antialiased down), the size their constants describe; the others are relative to the image (noise per
pixel, zoom factors, brightness, contrast, pixelate's factor, JPEG quality) and run at its own size.
glass_blur stays at the image's size too (its pixel-by-pixel Python loop takes 1.6 s per 224-px image):
its 1-4 px shuffles are relatively ~7x stronger on a 32-px image than on ImageNet's.
"""

from __future__ import annotations

import threading
from typing import Callable

import numpy as np

from noisystudent.stable_random import stable_hash64

SEVERITIES = (1, 2, 3, 4, 5)
TUNED_SIDE = 224  # the image side ImageNet-C's constants are given for
AT_224 = frozenset({"defocus_blur", "elastic_transform", "fog"})  # constants in pixels of a 224-px image
LEFT_OUT = {
    "frost": "needs ImageNet-C's frost photographs, files tensorflow-datasets does not ship",
    "motion_blur": "runs the ImageMagick binary, which no pip package provides (nor Dataflow's workers)",
    "snow": "runs the ImageMagick binary (its motion blur), which no pip package provides",
}
_LOCK = threading.Lock()  # NumPy's global random state is one per process


def _impulse_noise(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """tfds' impulse_noise with a seeded generator (its own call draws from an unseeded one)."""
    from skimage.util import random_noise
    from tensorflow_datasets.image_classification import corruptions as tfds_corruptions

    amount = [0.03, 0.06, 0.09, 0.17, 0.27][severity - 1]  # tfds corruptions.py impulse_noise
    noisy = random_noise(np.asarray(x) / 255.0, mode="s&p", amount=amount, rng=rng)
    return tfds_corruptions.around_and_astype(np.clip(noisy, 0, 1) * 255)


def _tfds(name: str) -> Callable[[np.ndarray, int, np.random.Generator], np.ndarray]:
    def apply(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
        from tensorflow_datasets.image_classification import corruptions as tfds_corruptions

        np.random.seed(int(rng.integers(0, 2**32)))  # the tfds functions draw from the global state
        return getattr(tfds_corruptions, name)(x, severity)
    return apply


# ImageNet-C's order (noise, blur, weather, digital), less LEFT_OUT.
CORRUPTIONS: dict[str, Callable[[np.ndarray, int, np.random.Generator], np.ndarray]] = {
    "gaussian_noise": _tfds("gaussian_noise"),
    "shot_noise": _tfds("shot_noise"),
    "impulse_noise": _impulse_noise,
    "defocus_blur": _tfds("defocus_blur"),
    "glass_blur": _tfds("glass_blur"),
    "zoom_blur": _tfds("zoom_blur"),
    "fog": _tfds("fog"),
    "brightness": _tfds("brightness"),
    "contrast": _tfds("contrast"),
    "elastic_transform": _tfds("elastic_transform"),
    "pixelate": _tfds("pixelate"),
    "jpeg_compression": _tfds("jpeg_compression"),
}


def parse_names(text: str, flag: str = "--corruptions") -> list[str]:
    """'all', '' (none) or comma-separated names -> names in ImageNet-C's order; a clear error otherwise."""
    if text.strip() == "all":
        return list(CORRUPTIONS)
    names = [n.strip() for n in text.split(",") if n.strip()]
    for name in names:
        if name in LEFT_OUT:
            raise ValueError(f"{flag}: {name} is left out: it {LEFT_OUT[name]}")
        if name not in CORRUPTIONS:
            raise ValueError(f"{flag}: no corruption {name!r} (choose from all, {', '.join(CORRUPTIONS)})")
    return [n for n in CORRUPTIONS if n in names]


def parse_severities(text: str, flag: str = "--severities") -> list[int]:
    try:
        severities = sorted({int(s) for s in text.split(",") if s.strip()})
    except ValueError:
        raise ValueError(f"{flag} {text!r}: expected comma-separated integers from 1 to 5") from None
    if not severities or not set(severities) <= set(SEVERITIES):
        raise ValueError(f"{flag} {text!r}: severities are 1 to 5 (ImageNet-C's)")
    return severities


def corrupt(pixels: np.ndarray, name: str, severity: int, seed: int, image_id: str) -> np.ndarray:
    """uint8 [H, W, 3] -> the same image under one corruption at one severity, uint8 [H, W, 3]; a pure
    function of (pixels, name, severity, seed, image_id)."""
    if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[2] != 3:
        raise ValueError(f"{image_id}: corrupt() takes uint8 [H, W, 3] pixels, got {pixels.dtype} {pixels.shape}")
    from noisystudent.host_images import resize

    rng = np.random.default_rng(stable_hash64(seed, "corruption", name, severity, image_id))
    side = pixels.shape[0]
    rescale = name in AT_224 and max(pixels.shape[:2]) < TUNED_SIDE and pixels.shape[0] == pixels.shape[1]
    with _LOCK:
        out = np.asarray(CORRUPTIONS[name](resize(pixels, TUNED_SIDE) if rescale else pixels, severity, rng))
    if rescale:
        out = resize(np.clip(np.rint(out), 0, 255).astype(np.uint8), side)
    if out.shape != pixels.shape:  # e.g. a grayscale result
        out = np.broadcast_to(out.reshape(pixels.shape[:2] + (-1,))[..., :3], pixels.shape)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8) if out.dtype != np.uint8 else np.ascontiguousarray(out)
