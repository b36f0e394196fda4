"""Input noise and decoding: batched RandAugment keeps per-image ops; ops match the original's."""

import numpy as np
import tensorflow as tf

from noisystudent import image_ops
from trainer.augment import RandAugment, autocontrast, equalize


def _original_equalize(image: tf.Tensor) -> tf.Tensor:
    """The original's randaugment.py:310 (equalize), transcribed: one uint8 image."""
    def scale_channel(im, c):
        im = tf.cast(im[:, :, c], tf.int32)
        histo = tf.histogram_fixed_width(im, [0, 255], nbins=256)
        nonzero_histo = tf.reshape(tf.gather(histo, tf.where(tf.not_equal(histo, 0))), [-1])
        step = (tf.reduce_sum(nonzero_histo) - nonzero_histo[-1]) // 255
        if int(step) == 0:
            return im
        lut = tf.clip_by_value(tf.concat([[0], ((tf.cumsum(histo) + step // 2) // step)[:-1]], 0), 0, 255)
        return tf.gather(lut, im)
    return tf.stack([scale_channel(image, c) for c in range(3)], 2)


def _original_autocontrast(image: np.ndarray) -> np.ndarray:
    out = image.astype(np.float32).copy()
    for c in range(3):
        lo, hi = out[..., c].min(), out[..., c].max()
        if hi > lo:
            out[..., c] = np.clip((out[..., c] - lo) * (255.0 / (hi - lo)), 0, 255)
    return out


def test_equalize_and_autocontrast_match_the_original_per_image():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (5, 9, 7, 3)).astype(np.float32)
    images[1] = 7.0  # constant: left alone
    images[2, ..., 0] = rng.integers(100, 104, (9, 7))  # a narrow channel
    equalized = equalize(tf.constant(images)).numpy()
    stretched = autocontrast(tf.constant(images)).numpy()
    for i in range(5):  # each image on its own, not the batch's pooled histogram
        np.testing.assert_array_equal(equalized[i], _original_equalize(tf.constant(images[i], tf.uint8)))
        np.testing.assert_allclose(stretched[i], _original_autocontrast(images[i]), atol=1e-3)


def test_each_image_of_a_batch_draws_its_own_ops():
    # At magnitude 0 only auto-contrast and equalize change an image (2 of 14 ops): per-image
    # choices leave about (12/14)^2 = 73% of a batch of identical images unchanged; one choice
    # for the whole batch would leave all or none.
    rng = np.random.default_rng(1)
    image = rng.integers(50, 200, (16, 16, 3)).astype(np.float32)
    batch = tf.constant(np.repeat(image[None], 64, axis=0))
    out = RandAugment(num_ops=2, magnitude=0, seed=3)(batch).numpy()
    assert out.shape == (64, 16, 16, 3) and out.min() >= 0 and out.max() <= 255
    unchanged = sum(np.abs(o - image).max() < 1.0 for o in out)
    assert 25 <= unchanged <= 60, unchanged
    noised = RandAugment(num_ops=2, magnitude=10, seed=3)(batch).numpy()
    assert len({o.tobytes() for o in noised}) > 32
    assert RandAugment(num_ops=0)(batch) is batch
    assert RandAugment(num_ops=1, magnitude=5)(tf.constant(image)).shape == (16, 16, 3)


def test_augmenting_inside_tf_data_handles_a_short_last_batch():
    images = np.random.default_rng(2).integers(0, 256, (10, 8, 8, 3)).astype(np.float32)
    ds = tf.data.Dataset.from_tensor_slices(images).batch(4).map(RandAugment(2, 5))
    assert [b.shape[0] for b in ds] == [4, 4, 2]


def test_decoding_skips_only_a_resize_that_changes_nothing():
    rng = np.random.default_rng(3)
    same = rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)
    other = rng.integers(0, 256, (20, 16, 3), dtype=np.uint8)
    np.testing.assert_array_equal(image_ops.decode_image(tf.io.encode_png(same), 12).numpy(), same)
    np.testing.assert_array_equal(tf.image.resize(same, [12, 12], antialias=True).numpy(), same)
    resized = image_ops.decode_image(tf.io.encode_png(other), 12).numpy()
    np.testing.assert_allclose(resized, tf.image.resize(other, [12, 12], antialias=True).numpy(), atol=1e-4)
    # Mixed sizes in one compiled batch (what inference and serving run).
    batch = tf.function(lambda e: image_ops.decode_batch(e, 12))(
        tf.stack([tf.io.encode_png(other), tf.io.encode_png(same)])).numpy()
    np.testing.assert_array_equal(batch[1], same)
    np.testing.assert_allclose(batch[0], resized, atol=1e-4)
