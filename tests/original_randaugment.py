"""The original's RandAugment ops, transcribed to TF 2 for the tests: one uint8 image [H, W, 3].

google-research/noisystudent randaugment.py (commit aac52bf), function by function, line numbers
beside each. TF 1.x names replaced by their TF 2 equivalents (tf.to_float -> tf.cast,
contrib_image.transform -> ImageProjectiveTransformV2, which contrib called, fill 0). Python
ints given to uint8 ops are wrapped modulo 256, as TF 1.x converted them with NumPy < 1.24.
"""

import math

import numpy as np
import tensorflow as tf


def _u8(value: int) -> tf.Tensor:
    return tf.constant(np.array(value % 256, np.uint8))


def blend(image1, image2, factor):  # randaugment.py:37-77
    if factor == 0.0:
        return tf.convert_to_tensor(image1)
    if factor == 1.0:
        return tf.convert_to_tensor(image2)
    image1 = tf.cast(image1, tf.float32)
    image2 = tf.cast(image2, tf.float32)
    difference = image2 - image1
    scaled = factor * difference
    temp = image1 + scaled
    if 0.0 < factor < 1.0:
        return tf.cast(temp, tf.uint8)
    return tf.cast(tf.clip_by_value(temp, 0.0, 255.0), tf.uint8)


def cutout(image, pad_size, replace, center_height, center_width):  # randaugment.py:80-128 (centre given)
    image_height = tf.shape(image)[0]
    image_width = tf.shape(image)[1]
    lower_pad = tf.maximum(0, center_height - pad_size)
    upper_pad = tf.maximum(0, image_height - center_height - pad_size)
    left_pad = tf.maximum(0, center_width - pad_size)
    right_pad = tf.maximum(0, image_width - center_width - pad_size)
    cutout_shape = [image_height - (lower_pad + upper_pad), image_width - (left_pad + right_pad)]
    mask = tf.pad(tf.zeros(cutout_shape, dtype=image.dtype), [[lower_pad, upper_pad], [left_pad, right_pad]],
                  constant_values=1)
    mask = tf.tile(tf.expand_dims(mask, -1), [1, 1, 3])
    return tf.where(tf.equal(mask, 0), tf.ones_like(image, dtype=image.dtype) * replace, image)


def cutout_numpy(image, pad_size, cy, cx, replace=128):
    """The same cutout in NumPy (fast enough to search every centre)."""
    h, w = image.shape[:2]
    lower_pad, upper_pad = max(0, cy - pad_size), max(0, h - cy - pad_size)
    left_pad, right_pad = max(0, cx - pad_size), max(0, w - cx - pad_size)
    mask = np.pad(np.zeros((h - (lower_pad + upper_pad), w - (left_pad + right_pad))),
                  [[lower_pad, upper_pad], [left_pad, right_pad]], constant_values=1)
    return np.where(np.equal(mask, 0)[..., None], replace, image)


def solarize(image, threshold=128):  # randaugment.py:131-135
    return tf.where(image < _u8(threshold), image, 255 - image)


def solarize_add(image, addition=0, threshold=128):  # randaugment.py:138-145
    added_image = tf.cast(image, tf.int64) + addition
    added_image = tf.cast(tf.clip_by_value(added_image, 0, 255), tf.uint8)
    return tf.where(image < threshold, added_image, image)


def color(image, factor):  # randaugment.py:148-151
    degenerate = tf.image.grayscale_to_rgb(tf.image.rgb_to_grayscale(image))
    return blend(degenerate, image, factor)


def contrast(image, factor):  # randaugment.py:154-168
    degenerate = tf.image.rgb_to_grayscale(image)
    degenerate = tf.cast(degenerate, tf.int32)
    hist = tf.histogram_fixed_width(degenerate, [0, 255], nbins=256)
    mean = tf.reduce_sum(tf.cast(hist, tf.float32)) / 256.0
    degenerate = tf.ones_like(degenerate, dtype=tf.float32) * mean
    degenerate = tf.clip_by_value(degenerate, 0.0, 255.0)
    degenerate = tf.image.grayscale_to_rgb(tf.cast(degenerate, tf.uint8))
    return blend(degenerate, image, factor)


def brightness(image, factor):  # randaugment.py:171-174
    return blend(tf.zeros_like(image), image, factor)


def posterize(image, bits):  # randaugment.py:177-180
    shift = _u8(8 - bits)
    return tf.bitwise.left_shift(tf.bitwise.right_shift(image, shift), shift)


def _transform(image, transform):  # contrib_image.transform, nearest, zeros outside
    return tf.raw_ops.ImageProjectiveTransformV2(
        images=image[None], transforms=tf.constant([transform], tf.float32),
        output_shape=tf.shape(image)[:2], interpolation="NEAREST", fill_mode="CONSTANT")[0]


def rotate(image, degrees, replace):  # randaugment.py:183-205, contrib angles_to_projective_transforms
    radians = tf.constant(degrees, tf.float32) * (math.pi / 180.0)
    h = tf.cast(tf.shape(image)[0], tf.float32)
    w = tf.cast(tf.shape(image)[1], tf.float32)
    cos, sin = tf.cos(radians), tf.sin(radians)
    x_offset = ((w - 1) - (cos * (w - 1) - sin * (h - 1))) / 2.0
    y_offset = ((h - 1) - (sin * (w - 1) + cos * (h - 1))) / 2.0
    transform = [float(cos), float(-sin), float(x_offset), float(sin), float(cos), float(y_offset), 0.0, 0.0]
    return unwrap(_transform(wrap(image), transform), replace)


def translate_x(image, pixels, replace):  # randaugment.py:208-211; translate(dx=-pixels) -> [1,0,-dx,...]
    return unwrap(_transform(wrap(image), [1.0, 0.0, pixels, 0.0, 1.0, 0.0, 0.0, 0.0]), replace)


def translate_y(image, pixels, replace):  # randaugment.py:214-217
    return unwrap(_transform(wrap(image), [1.0, 0.0, 0.0, 0.0, 1.0, pixels, 0.0, 0.0]), replace)


def shear_x(image, level, replace):  # randaugment.py:220-228
    return unwrap(_transform(wrap(image), [1.0, level, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0]), replace)


def shear_y(image, level, replace):  # randaugment.py:231-239
    return unwrap(_transform(wrap(image), [1.0, 0.0, 0.0, level, 1.0, 0.0, 0.0, 0.0]), replace)


def autocontrast(image):  # randaugment.py:242-278
    def scale_channel(image):
        lo = tf.cast(tf.reduce_min(image), tf.float32)
        hi = tf.cast(tf.reduce_max(image), tf.float32)

        def scale_values(im):
            scale = 255.0 / (hi - lo)
            offset = -lo * scale
            im = tf.cast(im, tf.float32) * scale + offset
            im = tf.clip_by_value(im, 0.0, 255.0)
            return tf.cast(im, tf.uint8)
        return tf.cond(hi > lo, lambda: scale_values(image), lambda: image)
    return tf.stack([scale_channel(image[:, :, c]) for c in range(3)], 2)


def sharpness(image, factor):  # randaugment.py:281-307
    orig_image = image
    image = tf.expand_dims(tf.cast(image, tf.float32), 0)
    kernel = tf.constant([[1, 1, 1], [1, 5, 1], [1, 1, 1]], dtype=tf.float32, shape=[3, 3, 1, 1]) / 13.
    kernel = tf.tile(kernel, [1, 1, 3, 1])
    degenerate = tf.nn.depthwise_conv2d(image, kernel, [1, 1, 1, 1], padding="VALID", dilations=[1, 1])
    degenerate = tf.clip_by_value(degenerate, 0.0, 255.0)
    degenerate = tf.squeeze(tf.cast(degenerate, tf.uint8), [0])
    mask = tf.ones_like(degenerate)
    padded_mask = tf.pad(mask, [[1, 1], [1, 1], [0, 0]])
    padded_degenerate = tf.pad(degenerate, [[1, 1], [1, 1], [0, 0]])
    result = tf.where(tf.equal(padded_mask, 1), padded_degenerate, orig_image)
    return blend(result, orig_image, factor)


def equalize(image):  # randaugment.py:310-347
    def scale_channel(im, c):
        im = tf.cast(im[:, :, c], tf.int32)
        histo = tf.histogram_fixed_width(im, [0, 255], nbins=256)
        nonzero = tf.where(tf.not_equal(histo, 0))
        nonzero_histo = tf.reshape(tf.gather(histo, nonzero), [-1])
        step = (tf.reduce_sum(nonzero_histo) - nonzero_histo[-1]) // 255

        def build_lut(histo, step):
            lut = (tf.cumsum(histo) + (step // 2)) // step
            lut = tf.concat([[0], lut[:-1]], 0)
            return tf.clip_by_value(lut, 0, 255)
        result = tf.cond(tf.equal(step, 0), lambda: im, lambda: tf.gather(build_lut(histo, step), im))
        return tf.cast(result, tf.uint8)
    return tf.stack([scale_channel(image, c) for c in range(3)], 2)


def invert(image):  # randaugment.py:350-353
    return 255 - tf.convert_to_tensor(image)


def wrap(image):  # randaugment.py:356-361
    shape = tf.shape(image)
    return tf.concat([image, tf.ones([shape[0], shape[1], 1], image.dtype)], 2)


def unwrap(image, replace):  # randaugment.py:364-399
    image_shape = tf.shape(image)
    flattened_image = tf.reshape(image, [-1, image_shape[2]])
    alpha_channel = flattened_image[:, 3]
    replace = tf.concat([tf.constant(replace, image.dtype), tf.ones([1], image.dtype)], 0)
    flattened_image = tf.where(tf.equal(alpha_channel, 0)[:, None],
                               tf.ones_like(flattened_image, dtype=image.dtype) * replace, flattened_image)
    image = tf.reshape(flattened_image, image_shape)
    return tf.slice(image, [0, 0, 0], [image_shape[0], image_shape[1], 3])


def level_to_arg(level, translate_const, cutout_const):  # randaugment.py:429-484, sign left to the caller
    enhance = (level / 10.) * 1.8 + 0.1
    return {
        "AutoContrast": (), "Equalize": (), "Invert": (),
        "Rotate": ((level / 10.) * 30.,),
        "Posterize": (int((level / 10.) * 4),),
        "Solarize": (int((level / 10.) * 256),),
        "SolarizeAdd": (int((level / 10.) * 110),),
        "Color": (enhance,), "Contrast": (enhance,), "Brightness": (enhance,), "Sharpness": (enhance,),
        "ShearX": ((level / 10.) * 0.3,), "ShearY": ((level / 10.) * 0.3,),
        "Cutout": (int((level / 10.) * cutout_const),),
        "TranslateX": ((level / 10.) * float(translate_const),),
        "TranslateY": ((level / 10.) * float(translate_const),),
    }


NAME_TO_FUNC = {  # randaugment.py:402-419
    "AutoContrast": autocontrast, "Equalize": equalize, "Invert": invert, "Rotate": rotate,
    "Posterize": posterize, "Solarize": solarize, "SolarizeAdd": solarize_add, "Color": color,
    "Contrast": contrast, "Brightness": brightness, "Sharpness": sharpness, "ShearX": shear_x,
    "ShearY": shear_y, "TranslateX": translate_x, "TranslateY": translate_y,
}
SIGNED = ("Rotate", "ShearX", "ShearY", "TranslateX", "TranslateY")  # randaugment.py:429-460
REPLACED = ("Rotate", "ShearX", "ShearY", "TranslateX", "TranslateY")  # take `replace` ([128] * 3)


def apply(name, image, level, sign=1.0, translate_const=100, cutout_const=40):
    """The original's op `name` at `level` with the given sign, on one uint8 image."""
    args = level_to_arg(level, translate_const, cutout_const)[name]
    if name in SIGNED:
        args = (sign * args[0],)
    if name in REPLACED:
        args = args + ([128] * 3,)
    return NAME_TO_FUNC[name](tf.constant(image, tf.uint8), *args).numpy()
