"""TensorFlow preprocessing of ImageNet JPEGs (the paper's data setup), run inside tf.data.

Train: torchvision's RandomResizedCrop(224, scale=(0.2, 1.0), ratio=(3/4, 4/3)) — up to 10
tries of (area fraction ~ U(scale), log aspect ratio ~ U(log ratio)), else a centred crop
with the aspect ratio clamped to `ratio` — then RandomHorizontalFlip. Eval: resize the
shorter side to 256 (the longer one to int(256 * long / short)), centre crop 224.
Resizing is bilinear with antialiasing (as PIL's bilinear filter). Then scale to [0, 1]
and normalise with the ImageNet mean and std. Randomness is stateless, from an int64
seed pair per example, so results are reproducible.
"""

from __future__ import annotations

import math

from glif_jax.data.normalization import mean_std
from glif_jax.data.tf_host import import_tensorflow

tf = import_tensorflow()

IMAGE_SIZE = 224
RESIZE_SIZE = 256
CROP_SCALE = (0.2, 1.0)
CROP_RATIO = (3.0 / 4.0, 4.0 / 3.0)
CROP_ATTEMPTS = 10


def sample_crop_window(image_shape, seed, scale=CROP_SCALE, ratio=CROP_RATIO):
    """RandomResizedCrop's window for an image of `image_shape` [H, W, C] (int32 tensor).

    Returns int32 scalars (offset_y, offset_x, height, width).
    """
    height = tf.cast(image_shape[0], tf.float32)
    width = tf.cast(image_shape[1], tf.float32)
    seeds = tf.random.experimental.stateless_split(seed, 4)
    target_area = height * width * tf.random.stateless_uniform(
        [CROP_ATTEMPTS], seeds[0], scale[0], scale[1]
    )
    aspect = tf.exp(
        tf.random.stateless_uniform(
            [CROP_ATTEMPTS], seeds[1], math.log(ratio[0]), math.log(ratio[1])
        )
    )
    widths = tf.round(tf.sqrt(target_area * aspect))
    heights = tf.round(tf.sqrt(target_area / aspect))
    fits = (widths > 0) & (widths <= width) & (heights > 0) & (heights <= height)
    first = tf.argmax(tf.cast(fits, tf.int32))
    any_fits = tf.reduce_any(fits)

    # Fallback: centred crop, aspect ratio clamped to `ratio`.
    image_ratio = width / height
    fallback_width = tf.where(
        image_ratio > ratio[1], tf.round(height * ratio[1]), width
    )
    fallback_height = tf.where(
        image_ratio < ratio[0], tf.round(width / ratio[0]), height
    )

    crop_height = tf.where(any_fits, heights[first], fallback_height)
    crop_width = tf.where(any_fits, widths[first], fallback_width)
    uniform_offsets = tf.random.stateless_uniform([2], seeds[2])
    random_y = tf.floor(uniform_offsets[0] * (height - crop_height + 1))
    random_x = tf.floor(uniform_offsets[1] * (width - crop_width + 1))
    offset_y = tf.where(any_fits, random_y, tf.floor((height - crop_height) / 2))
    offset_x = tf.where(any_fits, random_x, tf.floor((width - crop_width) / 2))
    window = tf.cast(tf.stack([offset_y, offset_x, crop_height, crop_width]), tf.int32)
    return window[0], window[1], window[2], window[3]


def normalize(image):
    """float [..., 3] in 0..255 -> normalised float32."""
    mean, std = mean_std("imagenet")
    return (tf.cast(image, tf.float32) / 255.0 - mean) / std


def train_image(image_bytes, seed):
    """JPEG bytes -> float32 [224, 224, 3]: random resized crop, flip, normalise."""
    offset_y, offset_x, height, width = sample_crop_window(
        tf.image.extract_jpeg_shape(image_bytes), seed
    )
    crop = tf.image.decode_and_crop_jpeg(
        image_bytes, tf.stack([offset_y, offset_x, height, width]), channels=3
    )
    image = tf.image.resize(crop, [IMAGE_SIZE, IMAGE_SIZE], method="bilinear", antialias=True)
    flip_seed = tf.random.experimental.stateless_split(seed, 4)[3]
    flip = tf.random.stateless_uniform([], flip_seed) < 0.5
    image = tf.cond(flip, lambda: tf.image.flip_left_right(image), lambda: image)
    return normalize(image)


def resize_shorter_side(image, size=RESIZE_SIZE):
    """[H, W, C] -> [size, int(size * W / H), C] or [int(size * H / W), size, C]."""
    height = tf.cast(tf.shape(image)[0], tf.float64)
    width = tf.cast(tf.shape(image)[1], tf.float64)
    shorter = tf.minimum(height, width)
    new_height = tf.cast(tf.floor(size * height / shorter), tf.int32)
    new_width = tf.cast(tf.floor(size * width / shorter), tf.int32)
    new_height = tf.where(height <= width, size, new_height)
    new_width = tf.where(width <= height, size, new_width)
    return tf.image.resize(image, [new_height, new_width], method="bilinear", antialias=True)


def center_crop(image, size=IMAGE_SIZE):
    """Centre crop [size, size] with torchvision's offset round((H - size) / 2)."""
    height = tf.cast(tf.shape(image)[0], tf.float32)
    width = tf.cast(tf.shape(image)[1], tf.float32)
    top = tf.cast(tf.round((height - size) / 2.0), tf.int32)
    left = tf.cast(tf.round((width - size) / 2.0), tf.int32)
    return image[top : top + size, left : left + size, :]


def eval_image(image_bytes):
    """JPEG bytes -> float32 [224, 224, 3]: resize 256, centre crop 224, normalise."""
    image = tf.image.decode_jpeg(image_bytes, channels=3)
    return normalize(center_crop(resize_shorter_side(image)))
