"""RandAugment against a transcription of the original's randaugment.py (tests/original_randaugment.py)."""

import numpy as np
import pytest
import tensorflow as tf

from noisystudent import image_ops
from tests import original_randaugment as original
from trainer.augment import CUTOUT, OPS, RandAugment


def _images(n=12, height=13, width=11, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, height, width, 3)).astype(np.uint8)
    images[1] = 7  # constant: autocontrast and equalize leave it alone
    images[2, ..., 0] = rng.integers(100, 104, (height, width))  # a narrow channel
    images[3, ..., 1] = rng.integers(0, 140, (height, width))  # below the solarize-add threshold
    return images


@pytest.mark.parametrize("magnitude", [0, 1, 5, 9, 10, 15, 27])
def test_every_op_matches_the_original_at_its_magnitude_and_sign(magnitude):
    images = _images()
    augment = RandAugment(magnitude=magnitude, translate_const=4, cutout_const=4, seed=magnitude + 100)
    for name in OPS:
        ours = augment.apply_op(name, tf.constant(images, tf.float32)).numpy()
        signs = (1.0, -1.0) if name in original.SIGNED else (1.0,)
        drawn = []  # the sign each image drew, where the two signs give different images
        for i, image in enumerate(images):
            expected = [original.apply(name, image, magnitude, s, translate_const=4) for s in signs]
            hits = [k for k, e in enumerate(expected) if np.array_equal(ours[i], e)]
            assert hits, f"{name} at magnitude {magnitude}: image {i} matches no sign of the original's"
            if len(hits) == 1 and len(signs) == 2:
                drawn.append(hits[0])
        if len(drawn) >= 6:
            assert set(drawn) == {0, 1}, f"{name}: every image drew the same sign"


def test_random_signs_differ_between_images_of_a_batch():
    image = _images()[0]
    batch = tf.constant(np.repeat(image[None], 32, axis=0), tf.float32)
    rotated = RandAugment(magnitude=10, seed=1).apply_op("Rotate", batch).numpy()
    plus = original.apply("Rotate", image, 10, 1.0)
    minus = original.apply("Rotate", image, 10, -1.0)
    assert not np.array_equal(plus, minus)
    count_plus = sum(np.array_equal(r, plus) for r in rotated)
    count_minus = sum(np.array_equal(r, minus) for r in rotated)
    assert count_plus + count_minus == 32 and 6 <= count_plus <= 26, (count_plus, count_minus)


@pytest.mark.parametrize("magnitude,cutout_const", [(5, 4), (10, 40), (27, 40)])
def test_the_cutout_op_masks_a_square_at_a_drawn_centre_as_the_original(magnitude, cutout_const):
    images = _images(6, 40, 36)
    ours = RandAugment(magnitude=magnitude, cutout_const=cutout_const, seed=2).apply_op(
        CUTOUT, tf.constant(images, tf.float32)).numpy()
    pad = int(magnitude / 10 * cutout_const)
    for i, image in enumerate(images):
        candidates = [(r, c) for r in range(40) for c in range(36)
                      if np.array_equal(ours[i], original.cutout_numpy(image, pad, r, c))]
        assert candidates, f"image {i}: no centre reproduces the cutout"
        np.testing.assert_array_equal(ours[i], original.cutout(tf.constant(image), pad, 128, *candidates[0]))


def test_the_op_list_is_the_originals_with_cutout():
    assert RandAugment().ops == (
        "AutoContrast", "Equalize", "Invert", "Rotate", "Posterize", "Solarize", "Color", "Contrast",
        "Brightness", "Sharpness", "ShearX", "ShearY", "TranslateX", "TranslateY", "SolarizeAdd", "Cutout")
    assert RandAugment(cutout_op=False).ops == RandAugment().ops[:-1]
    with pytest.raises(ValueError, match="magnitude"):
        RandAugment(magnitude=31)


def test_each_image_of_a_batch_draws_its_own_ops():
    # At magnitude 0, 7 of the 16 ops change nothing (rotate, shears and translations by 0,
    # solarize-add of 0, a cutout of side 0): with one op per image about 7/16 of a batch of
    # identical images stays unchanged; one draw for the whole batch would leave all or none.
    image = _images()[0].astype(np.float32)
    batch = tf.constant(np.repeat(image[None], 256, axis=0))
    out = RandAugment(num_ops=1, magnitude=0, seed=3)(batch).numpy()
    assert out.shape == (256, 13, 11, 3) and out.min() >= 0 and out.max() <= 255
    unchanged = sum(np.array_equal(o, image) for o in out)
    assert 80 <= unchanged <= 144, unchanged
    noised = RandAugment(num_ops=2, magnitude=10, seed=3)(batch).numpy()
    assert len({o.tobytes() for o in noised}) > 32
    assert np.array_equal(noised, np.floor(noised))  # uint8 values, as the original's casts leave them
    assert RandAugment(num_ops=0)(batch) is batch
    assert RandAugment(num_ops=1, magnitude=5)(tf.constant(image)).shape == (13, 11, 3)


def test_augmenting_inside_tf_data_handles_a_short_last_batch():
    images = np.random.default_rng(2).integers(0, 256, (10, 8, 8, 3)).astype(np.float32)
    ds = tf.data.Dataset.from_tensor_slices(images).batch(4).map(RandAugment(2, 5, seed=1))
    batches = [b.numpy() for b in ds]
    assert [b.shape[0] for b in batches] == [4, 4, 2]
    short = batches[-1]
    assert not np.array_equal(short, images[8:])  # the short batch is augmented too, not passed through
    assert all(not np.array_equal(short[i], images[8 + i]) for i in range(2))
    assert short.min() >= 0 and short.max() <= 255


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
