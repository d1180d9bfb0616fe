"""Host-side augmentation and normalisation against NumPy references (the paper's data setup)."""

import numpy as np
import pytest

from glif_jax.data import cifar
from glif_jax.data.augment import random_crop, random_horizontal_flip
from glif_jax.data.normalization import normalize_uint8

# The paper's data setup, typed here independently of glif_jax.data.normalization.
CIFAR10_MEAN = np.array([0.4914, 0.4822, 0.4465])
CIFAR10_STD = np.array([0.247, 0.243, 0.261])
CIFAR100_MEAN = np.array([0.5071, 0.4867, 0.4408])
CIFAR100_STD = np.array([0.2675, 0.2565, 0.2761])


def zero_padded_windows(image, padding):
    """Every (row, column) -> crop of the zero-padded image (H, W, C)."""
    height, width = image.shape[:2]
    padded = np.zeros((height + 2 * padding, width + 2 * padding, image.shape[2]), image.dtype)
    padded[padding : padding + height, padding : padding + width] = image
    return {
        (row, column): padded[row : row + height, column : column + width]
        for row in range(2 * padding + 1)
        for column in range(2 * padding + 1)
    }


def matching_offsets(original, output, padding):
    return [
        offset
        for offset, window in zero_padded_windows(original, padding).items()
        if np.array_equal(window, output)
    ]


def test_random_crop_is_a_uniform_window_of_the_zero_padded_image():
    """The paper's data setup: random crop with zero padding; offsets uniform over {0..2p} per axis."""
    rng = np.random.default_rng(0)
    images = rng.integers(1, 256, size=(96, 6, 7, 3), dtype=np.uint8)  # H != W
    cropped = random_crop(images, np.random.default_rng(1), padding=2)
    assert cropped.shape == images.shape and cropped.dtype == np.uint8
    offsets = []
    for original, output in zip(images, cropped):
        matches = matching_offsets(original, output, 2)
        assert len(matches) == 1
        offsets.append(matches[0])
    rows, columns = np.array(offsets).T
    assert set(rows) == set(range(5)) and set(columns) == set(range(5))
    assert len(set(offsets)) > 15  # rows and columns drawn independently


def test_random_crop_uses_one_window_for_all_frames_of_an_example():
    """The paper's data setup (CIFAR10-DVS): the crop of a recording is the same for its 16 frames."""
    rng = np.random.default_rng(2)
    frames = rng.random((12, 3, 5, 5, 2)).astype(np.float32) + 1.0
    cropped = random_crop(frames, np.random.default_rng(3), padding=4)
    seen = set()
    for original, output in zip(frames, cropped):
        first = matching_offsets(original[0], output[0], 4)
        assert len(first) == 1
        for time in range(3):
            assert matching_offsets(original[time], output[time], 4) == first
        seen.add(first[0])
    assert len(seen) > 1


def test_random_horizontal_flip_mirrors_about_half_of_the_images():
    """The paper's data setup: random horizontal flip (W axis), probability 1/2."""
    images = np.random.default_rng(4).integers(0, 256, size=(200, 4, 5, 3), dtype=np.uint8)
    flipped = random_horizontal_flip(images, np.random.default_rng(5))
    mirrored = []
    for original, output in zip(images, flipped):
        is_same = np.array_equal(output, original)
        is_mirror = np.array_equal(output, original[:, ::-1, :])
        assert is_same != is_mirror
        mirrored.append(is_mirror)
    assert 0.35 < np.mean(mirrored) < 0.65


@pytest.mark.parametrize(
    "name, mean, std", [("cifar10", CIFAR10_MEAN, CIFAR10_STD), ("cifar100", CIFAR100_MEAN, CIFAR100_STD)]
)
def test_normalisation_uses_the_spec_means_and_stds(name, mean, std):
    """The paper's data setup: scale to [0, 1], then (x - mean) / std per channel."""
    images = np.random.default_rng(6).integers(0, 256, size=(3, 2, 2, 3), dtype=np.uint8)
    expected = (images / 255.0 - mean) / std
    result = normalize_uint8(images, name)
    assert result.dtype == np.float32
    np.testing.assert_allclose(result, expected, rtol=1e-5, atol=1e-5)


def test_cifar_train_preprocessing_pads_with_black_before_normalising():
    """The paper's data setup: crop/flip act on pixel values, so padding is a zero pixel (black), which
    normalises to -mean/std; the result is a crop (maybe mirrored) of the padded image."""
    train, evaluate = cifar.preprocessing("cifar10")
    images = np.random.default_rng(7).integers(1, 256, size=(64, 32, 32, 3), dtype=np.uint8)
    output = train(images, np.random.default_rng(8))
    assert output.shape == (64, 32, 32, 3) and output.dtype == np.float32
    pixels = np.rint((output * CIFAR10_STD + CIFAR10_MEAN) * 255.0).astype(np.int64)
    black = (0.0 - CIFAR10_MEAN) / CIFAR10_STD
    found_padding = False
    for original, result, recovered in zip(images, output, pixels):
        candidates = matching_offsets(original, recovered, 4) + matching_offsets(
            original[:, ::-1], recovered, 4
        )
        assert len(candidates) == 1
        zero_pixels = (recovered == 0).all(axis=-1)
        if zero_pixels.any():
            found_padding = True
            np.testing.assert_allclose(result[zero_pixels], np.broadcast_to(black, result[zero_pixels].shape), atol=1e-5)
    assert found_padding
    np.testing.assert_allclose(evaluate(images), (images / 255.0 - CIFAR10_MEAN) / CIFAR10_STD, atol=1e-5)


def test_cifar_train_preprocessing_is_reproducible_from_the_seed():
    """Augmentation draws only from the given generator."""
    train, _ = cifar.preprocessing("cifar100")
    images = np.random.default_rng(9).integers(0, 256, size=(16, 32, 32, 3), dtype=np.uint8)
    first = train(images, np.random.default_rng(10))
    again = train(images, np.random.default_rng(10))
    other = train(images, np.random.default_rng(11))
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_unknown_normalisation_name_is_rejected():
    with pytest.raises(ValueError, match="^normalization: expected one of"):
        normalize_uint8(np.zeros((1, 2, 2, 3), np.uint8), "mnist")
