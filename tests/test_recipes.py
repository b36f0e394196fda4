"""The paper's recipes: preset values and the learning-rate schedule against transcriptions of the
original (google-research/noisystudent), and docs/recipes.md against the presets."""

import math
import pathlib
import re

import keras
import numpy as np
import pytest

from tests import original_randaugment
from trainer.config import PRESETS, get_config
from trainer.optimization import learning_rate_schedule, peak_learning_rate

SVHN_TRAIN_IMAGES = 73257 - 4000  # task_info.py:39, the train split less the 4,000 held out
IMAGENET_TRAIN_IMAGES = 1281167  # task_info.py:37


def original_learning_rate(global_step, base_learning_rate, train_batch_size, num_train_images, train_steps,
                           final_base_lr=None, train_ratio=1.0):
    """main.py:565-584 and utils.py:39-74 of the original, transcribed in NumPy (exponential decay,
    label_data_sample_prob = 1, start_from_step = 0)."""
    steps_per_epoch = num_train_images / train_batch_size  # main.py:691-692
    scaled_lr = base_learning_rate * (train_batch_size / 256.0)  # main.py:568
    if final_base_lr:  # main.py:569-575
        total_epochs = train_steps * train_batch_size * 1. / num_train_images - 5
        decay_times = math.log(final_base_lr / base_learning_rate) / math.log(0.97)
        decay_epochs = total_epochs / decay_times
    else:
        decay_epochs = 2.4 * train_ratio  # main.py:577
    # utils.build_learning_rate(scaled_lr, global_step, steps_per_epoch, decay_epochs=..., warmup_epochs=5)
    lr_step = global_step
    decay_steps = steps_per_epoch * decay_epochs
    lr = scaled_lr * 0.97 ** np.floor(lr_step / decay_steps)  # tf.train.exponential_decay, staircase
    warmup_steps = int(5 * steps_per_epoch)
    if lr_step < warmup_steps:
        lr = scaled_lr * float(lr_step) / float(warmup_steps)
    return lr


def _ours(config, num_train_images, steps):
    schedule = learning_rate_schedule(config, config.train_steps, peak_learning_rate(config), num_train_images)
    return [float(keras.ops.convert_to_numpy(schedule(s))) for s in steps]


def test_svhn_learning_rate_is_the_originals_at_every_phase():
    config = get_config("svhn")
    warmup = int(5 * SVHN_TRAIN_IMAGES / 128)
    steps = [0, 1, 100, warmup - 1, warmup, warmup + 1, 20000, 54321, 100000, config.train_steps - 1]
    expected = [original_learning_rate(s, 0.016, 128, SVHN_TRAIN_IMAGES, 109474, final_base_lr=0.0002)
                for s in steps]
    np.testing.assert_allclose(_ours(config, SVHN_TRAIN_IMAGES, steps), expected, rtol=1e-5)
    # What the SVHN script's final_base_lr means: the scaled LR ends near 0.0002 x 128/256, ~1% of its
    # peak; a little below, as in the original: the span excludes the 5 warm-up epochs, the decays do not.
    last = _ours(config, SVHN_TRAIN_IMAGES, [config.train_steps - 1])[0]
    assert 0.0001 * 0.97 ** 4 <= last < 0.0001


def test_imagenet_learning_rate_decays_every_2_4_epochs_of_the_labeled_data():
    config = get_config("imagenet")
    steps = [0, 1563, 1564, 1600, 10000, 100000, config.train_steps - 1]
    expected = [original_learning_rate(s, 0.016, 4096, IMAGENET_TRAIN_IMAGES, 109474) for s in steps]
    np.testing.assert_allclose(_ours(config, IMAGENET_TRAIN_IMAGES, steps), expected, rtol=1e-5)
    assert peak_learning_rate(config) == pytest.approx(0.256)  # 0.016 per 256: the paper's 0.128 at 2048


def test_the_checkpoint_interval_does_not_change_the_learning_rate():
    steps = [0, 5000, 60000]
    a = _ours(get_config("svhn"), SVHN_TRAIN_IMAGES, steps)
    b = _ours(get_config("svhn", steps_per_epoch=37), SVHN_TRAIN_IMAGES, steps)
    assert a == b


def test_an_epoch_based_schedule_without_the_data_size_or_room_to_decay_is_a_clear_error():
    with pytest.raises(ValueError, match="num_train_images"):
        learning_rate_schedule(get_config("svhn"), 1000, 0.008, 0)
    with pytest.raises(ValueError, match="final_base_lr.*not more than the 5 warm-up epochs"):
        learning_rate_schedule(get_config("svhn", train_steps=2000, warmup_epochs=0.0), 2000, 0.008,
                               SVHN_TRAIN_IMAGES)


def _recipe_tables():
    """{preset: {field: value as written}} from docs/recipes.md's tables."""
    text = (pathlib.Path(__file__).parent.parent / "docs" / "recipes.md").read_text()
    tables, preset = {}, None
    for line in text.splitlines():
        heading = re.match(r"^## `--preset (\w+)`", line)
        if heading:
            preset = heading.group(1)
            tables[preset] = {}
        row = re.match(r"^\| `(\w+)` \| `([^`]*)` \|", line)
        if row and preset:
            tables[preset][row.group(1)] = row.group(2)
    return tables


def test_docs_recipes_states_every_preset_value_as_the_code_has_it():
    tables = _recipe_tables()
    assert set(tables) == {"svhn", "imagenet"}
    for preset, rows in tables.items():
        config = get_config(preset)
        assert set(PRESETS[preset]) <= set(rows), f"docs/recipes.md misses {set(PRESETS[preset]) - set(rows)}"
        for field, written in rows.items():
            assert str(getattr(config, field)) == written, (preset, field)


def _original_small_image_blocks_args():
    """efficientnet_builder.py:128-136 with FLAGS.small_image_model, transcribed."""
    blocks_args = [
        'r1_k3_s11_e1_i32_o16_se0.25', 'r2_k3_s22_e6_i16_o24_se0.25',
        'r2_k5_s22_e6_i24_o40_se0.25', 'r3_k3_s22_e6_i40_o80_se0.25',
        'r3_k5_s11_e6_i80_o112_se0.25', 'r4_k5_s22_e6_i112_o192_se0.25',
        'r1_k3_s11_e6_i192_o320_se0.25',
    ]
    blocks_args[1] = 'r2_k3_s11_e6_i16_o24_se0.25'
    blocks_args[2] = 'r2_k5_s11_e6_i24_o40_se0.25'
    return blocks_args


def test_small_image_efficientnet_has_the_originals_strides_and_a_4x4_final_map_at_32px():
    from model import build_model, count_params
    from model.efficientnet import B0_BLOCKS

    config = get_config("svhn")
    assert config.small_image_model
    original = [(int(a.split("_")[0][1:]), int(a.split("_")[2][1])) for a in _original_small_image_blocks_args()]
    small = build_model("efficientnet-b0", 10, input_shape=(32, 32, 3), small_image=True)
    plain = build_model("efficientnet-b0", 10, input_shape=(32, 32, 3))
    strides = {}
    for layer in small.layers:
        if layer.name.endswith("_dwconv"):
            strides[int(layer.name.split("_")[0][len("block"):])] = layer.strides[0]
    first_block_of_stage = [1 + sum(b.repeats for b in B0_BLOCKS[:i]) for i in range(len(B0_BLOCKS))]
    assert [(B0_BLOCKS[i].repeats, strides[first_block_of_stage[i]]) for i in range(7)] == original
    assert tuple(small.get_layer("top_activation").output.shape[1:3]) == (4, 4)
    assert tuple(plain.get_layer("top_activation").output.shape[1:3]) == (1, 1)
    # Strides change no weight: the same parameters (the published B0 checkpoint loads into either).
    assert small.count_params() == plain.count_params() == count_params("efficientnet-b0", 10)


def _original_small_image_crop(image, oy, ox):
    """preprocessing.py:143-151 (small_image_crop) in NumPy, with its crop offset given."""
    padded = np.pad(image, [[4, 4], [4, 4], [0, 0]], mode="reflect")
    return padded[oy:oy + image.shape[0], ox:ox + image.shape[1]]


def test_svhn_crop_noise_is_the_originals_cutout_then_reflect_pad_crop():
    import tensorflow as tf

    from trainer.crop_noise import SmallImageNoise, cutout_at, reflect_pad_crop_at

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (5, 32, 32, 3)).astype(np.float32)
    centers = np.array([[0, 0], [31, 31], [16, 5], [7, 30], [20, 20]], np.int32)  # borders included
    offsets = np.array([[0, 0], [8, 8], [3, 5], [8, 0], [4, 4]], np.int32)
    ours = reflect_pad_crop_at(cutout_at(tf.constant(images), tf.constant(centers), 32 // 4),
                               tf.constant(offsets)).numpy()
    for i in range(5):
        expected = _original_small_image_crop(original_randaugment.cutout_numpy(images[i], 8, *centers[i]), *offsets[i])
        np.testing.assert_array_equal(ours[i], expected)
    assert get_config("svhn").input_noise == "svhn"
    noised = SmallImageNoise(32, seed=0)(tf.constant(images)).numpy()
    assert noised.shape == images.shape and (noised == 128).any()


def test_svhn_models_normalise_with_the_originals_svhn_mean_and_std():
    from model import build_model

    # task_info.py:27-29, transcribed: on [0, 255] pixels
    mean = [0.4376821 * 255, 0.4437697 * 255, 0.47280442 * 255]
    stddev = [0.19803012 * 255, 0.20101562 * 255, 0.19703614 * 255]
    config = get_config("svhn")
    model = build_model(config.model, 10, input_shape=(32, 32, 3), normalization=config.normalization)
    pixels = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    normalised = keras.Model(model.input, model.get_layer("normalization").output)(pixels)
    np.testing.assert_allclose(np.asarray(normalised), (pixels - mean) / stddev, rtol=1e-4, atol=1e-4)


def _original_center_crop(image, image_size):
    """preprocessing.py:104-134 (center_crop, without its tf.Print lines), in TF1-style ops."""
    import tensorflow as tf

    shape = tf.shape(image)
    image_height, image_width = shape[0], shape[1]
    padded_center_crop_size = tf.cast(((image_size / (image_size + 32)) *
                                       tf.cast(tf.minimum(image_height, image_width), tf.float32)), tf.int32)
    offset_height = ((image_height - padded_center_crop_size) + 1) // 2
    offset_width = ((image_width - padded_center_crop_size) + 1) // 2
    bbox_begin = tf.stack([offset_height, offset_width, tf.constant(0, dtype=tf.int32)])
    bbox_size = tf.stack([padded_center_crop_size, padded_center_crop_size, tf.constant(-1, dtype=tf.int32)])
    image = tf.slice(image, bbox_begin, bbox_size)
    return tf.compat.v1.image.resize_bicubic([image], [image_size, image_size])[0]


@pytest.mark.parametrize("height, width, size", [(375, 500, 224), (500, 333, 240), (64, 64, 32), (41, 97, 17)])
def test_imagenet_eval_and_labelling_crop_is_the_originals(height, width, size):
    import tensorflow as tf

    from noisystudent import image_ops

    image = np.random.default_rng(height).integers(0, 256, (height, width, 3), dtype=np.uint8)
    expected = _original_center_crop(tf.constant(image), size).numpy()
    encoded = tf.io.encode_png(image)
    np.testing.assert_allclose(image_ops.decode_image(encoded, size, crop=True).numpy(), expected, atol=1e-3)
    np.testing.assert_allclose(image_ops.decode_batch(tf.stack([encoded]), size, crop=True).numpy()[0],
                               expected, atol=1e-3)
    assert get_config("imagenet").eval_center_crop


def _original_random_crop(ori_image, image_size, sample):
    """preprocessing.py:81-101 (_random_crop), its box draw (`sample_distorted_bounding_box`) given."""
    import tensorflow as tf

    begin, size, _ = sample
    image = tf.slice(ori_image, begin, size)
    bad = tf.reduce_sum(tf.cast(tf.equal(tf.shape(ori_image), tf.shape(image)), tf.int32)) >= 3
    if bad:
        return _original_center_crop(ori_image, image_size)
    return tf.compat.v1.image.resize_bicubic([image], [image_size, image_size])[0]


@pytest.mark.parametrize("height, width, size", [(375, 500, 64), (60, 40, 32)])
def test_imagenet_training_crop_is_the_originals_inception_crop_then_flip(height, width, size):
    import tensorflow as tf

    from trainer.crop_noise import AREA_RANGE, ASPECT_RATIO_RANGE, InceptionCropFlip, inception_crop

    # preprocessing.py:84-91, transcribed
    assert (AREA_RANGE, ASPECT_RATIO_RANGE) == ((0.08, 1.0), (3. / 4, 4. / 3.))
    image = tf.constant(np.random.default_rng(height).integers(0, 256, (height, width, 3), dtype=np.uint8))
    for seed in range(12):
        seed = tf.constant([seed, 7], tf.int32)
        sample = tf.image.stateless_sample_distorted_bounding_box(
            tf.shape(image), tf.constant([[[0.0, 0.0, 1.0, 1.0]]]), seed=seed, min_object_covered=0.1,
            aspect_ratio_range=(3. / 4, 4. / 3.), area_range=(0.08, 1.0), max_attempts=10,
            use_image_if_no_bounding_boxes=True)
        np.testing.assert_allclose(inception_crop(image, size, seed).numpy(),
                                   _original_random_crop(image, size, sample).numpy(), atol=1e-3)
    assert get_config("imagenet").input_noise == "imagenet"
    # The flip: half of the crops mirrored (a 1-px-wide crop would look the same either way).
    flips = InceptionCropFlip(size, seed=0)
    ramp = tf.tile(tf.cast(tf.range(width) * 255 // width, tf.uint8)[None, :, None], [height, 1, 3])
    crops = [flips(tf.io.encode_png(ramp)) for _ in range(40)]
    mirrored = sum(bool(c[0, 0, 0] > c[0, -1, 0]) for c in crops)
    assert 8 <= mirrored <= 32, mirrored


def test_predict_labels_the_center_crop_when_asked(tmp_path):
    import tensorflow as tf

    from noisystudent.teacher import load_teacher
    from model import build_model

    model = build_model("cnn-small", 4, input_shape=(16, 16, 3))
    model.save(str(tmp_path / "t.keras"))
    image = np.random.default_rng(1).integers(0, 256, (30, 50, 3), dtype=np.uint8)
    encoded = tf.io.encode_png(image).numpy()
    cropped = _original_center_crop(tf.constant(image), 16)[None]
    teacher = load_teacher(str(tmp_path / "t.keras"), center_crop=True)
    np.testing.assert_allclose(teacher.label([encoded]), model(cropped, training=False).numpy(), atol=1e-5)
    whole = load_teacher(str(tmp_path / "t.keras"))
    assert not np.allclose(whole.label([encoded]), teacher.label([encoded]), atol=1e-5)


def _original_conv_stddev(shape):
    """efficientnet_model.py:74-95 (conv_kernel_initializer): normal, stddev sqrt(2 / fan_out)."""
    kernel_height, kernel_width, _, out_filters = shape
    return math.sqrt(2.0 / int(kernel_height * kernel_width * out_filters))


def test_efficientnet_initialisers_are_the_originals():
    from model import build_model

    model = build_model("efficientnet-b0", 10, input_shape=(32, 32, 3))
    checked = 0
    for layer in model.layers:
        kernel = getattr(layer, "depthwise_kernel", None) or getattr(layer, "kernel", None)
        if kernel is None or layer.name == "predictions":
            continue
        values = np.asarray(kernel)
        stddev = _original_conv_stddev(values.shape)
        if values.size >= 20000:  # enough draws to tell the distribution
            assert abs(values.std() / stddev - 1) < 0.05, layer.name
            assert np.abs(values).max() > 3 * stddev, f"{layer.name}: truncated, the original's is not"
            checked += 1
    assert checked >= 10
    # dense_kernel_initializer (efficientnet_model.py:98-116): uniform(+-1/sqrt(num_classes))
    dense = np.asarray(model.get_layer("predictions").kernel)
    limit = 1.0 / math.sqrt(10)
    assert np.abs(dense).max() <= limit and np.abs(dense).max() > 0.95 * limit
    assert abs(dense.std() / (limit / math.sqrt(3)) - 1) < 0.05


def test_rmsprop_steps_as_tf1s_rmspropoptimizer_the_originals_from_the_first_step():
    """utils.py:92 trains with tf.train.RMSPropOptimizer(lr, decay 0.9, momentum 0.9, epsilon 1e-3), whose
    mean square starts at 1. The TF1 optimizer itself (tf.compat.v1) is the reference, on a toy problem
    whose gradients span four orders of magnitude."""
    import tensorflow as tf

    from trainer.optimization import TF1RMSprop

    target = np.array([1.0, -2.0, 0.5, 3.0], np.float32)
    scale = np.array([1e-2, 1.0, 10.0, 100.0], np.float32)

    def trajectory(step_fn, steps=150):
        path = []
        for _ in range(steps):
            path.append(step_fn())
        return np.array(path)

    reference_var = tf.Variable(np.zeros(4, np.float32))
    reference = tf.compat.v1.train.RMSPropOptimizer(0.01, decay=0.9, momentum=0.9, epsilon=1e-3)

    def reference_step():
        reference.minimize(lambda: tf.reduce_sum(scale * (reference_var - target) ** 2), var_list=[reference_var])
        return reference_var.numpy().copy()

    def keras_steps(optimizer):
        var = keras.Variable(np.zeros(4, np.float32))

        def step():
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum(scale * (var.value - target) ** 2)
            optimizer.apply_gradients([(tape.gradient(loss, var.value), var)])
            return np.asarray(var.numpy()).copy()
        return step

    expected = trajectory(reference_step)
    ours = trajectory(keras_steps(TF1RMSprop(0.01, rho=0.9, momentum=0.9, epsilon=1e-3)))
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-6)
    # Keras' own RMSprop (mean square from 0) is the deviation: far larger first steps.
    plain = trajectory(keras_steps(keras.optimizers.RMSprop(0.01, rho=0.9, momentum=0.9, epsilon=1e-3)), 5)
    assert np.abs(plain[0, 0]).max() > 10 * np.abs(expected[0, 0])
