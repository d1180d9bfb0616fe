"""The public entry point glif_jax.data.build: registry, argument checks, defaults."""

import itertools

import ml_collections
import numpy as np
import pytest

from glif_jax import data
from glif_jax.errors import OptionError


def digits_config(**overrides):
    config = ml_collections.ConfigDict(
        dict(name="digits", data_dir=None, train_path=None, eval_path=None,
             normalization=None, augment=True, cache_dir=None, prefetch=2)
    )
    config.update(overrides)
    return config


def test_unknown_dataset_name_lists_the_known_names():
    with pytest.raises(ValueError) as error:
        data.build({"name": "mnist"}, split="train", batch_size=2, seed=0, train=True)
    for name in ("digits", "cifar10", "cifar100", "imagenet2012", "cifar10_dvs", "npz"):
        assert name in str(error.value)
    assert "mnist" in str(error.value)


@pytest.mark.parametrize(
    "arguments, message",
    [
        (dict(split="test"), r"^split: expected one of \('train', 'eval'\), got 'test'"),
        (dict(batch_size=0), "^batch_size: expected an integer >= 1, got 0"),
        (dict(batch_size=2.5), "^batch_size: expected an integer >= 1, got 2.5"),
        (dict(seed=-1), "^seed: expected an integer >= 0, got -1"),
        (dict(shard_index=2, shard_count=2), r"^shard_index: expected an integer in \[0, shard_count=2\), got 2"),
        (dict(shard_count=0), "^shard_count: expected an integer >= 1, got 0"),
    ],
)
def test_bad_arguments_are_named_in_early_errors(arguments, message):
    call = dict(split="train", batch_size=4, seed=0, train=True)
    call.update(arguments)
    with pytest.raises(ValueError, match=message):
        data.build(digits_config(), **call)


def test_config_must_name_a_dataset():
    with pytest.raises(ValueError, match="name: required: one of digits, cifar10"):
        data.build({}, split="train", batch_size=2, seed=0, train=True)
    with pytest.raises(TypeError, match="dataset_config must be a ConfigDict"):
        data.build("digits", split="train", batch_size=2, seed=0, train=True)
    with pytest.raises(ValueError, match="prefetch: expected an integer >= 0"):
        data.build(digits_config(prefetch=-1), split="train", batch_size=2, seed=0, train=True)


@pytest.mark.parametrize(
    "overrides, option, problem",
    [
        (dict(name="npz"), "normalization", "required for the 'npz' dataset: one of ('cifar10', 'cifar100', "
                                            "'imagenet', 'digits') (the mean and std its images are normalised with)"),
        (dict(normalization="mnist"), "normalization", "expected one of ('cifar10', 'cifar100', 'imagenet', "
                                                       "'digits'), got 'mnist'"),
        (dict(augment="yes"), "augment", "expected True or False, got 'yes'"),
        (dict(data_dir=3), "data_dir", "expected a path or None, got 3"),
        (dict(prefetch=1.5), "prefetch", "expected an integer >= 0, got 1.5"),
    ],
)
def test_dataset_options_name_the_bad_field(overrides, option, problem):
    with pytest.raises(OptionError) as error:
        data.DatasetOptions.from_config({**digits_config().to_dict(), **overrides})   # a plain mapping
    assert (error.value.option, error.value.problem) == (option, problem)


def test_dataset_options_reject_unknown_fields_and_pass_through():
    with pytest.raises(OptionError, match="^data_path: not an option of a dataset; its options: name, data_dir"):
        data.DatasetOptions.from_config({"name": "digits", "data_path": "/data"})
    options = data.DatasetOptions.from_config(digits_config(prefetch=0))
    assert options == data.DatasetOptions(name="digits", prefetch=0)
    assert data.DatasetOptions.from_config(options) is options
    batches, info = data.build(options, split="eval", batch_size=100, seed=0, train=False)
    assert info.name == "digits" and len(batches) == 4


def test_an_npz_split_needs_its_file_and_only_its_own():
    """The "npz" dataset reads the file of the split it builds; both are checked before reading."""
    options = data.DatasetOptions(name="npz", normalization="cifar10", eval_path="/data/test.npz")
    options.check_split("eval")
    with pytest.raises(OptionError, match="^train_path: required for the 'npz' dataset: the train split's .npz file"):
        options.check_split("train")
    with pytest.raises(OptionError, match="^train_path: required"):
        data.build(options, split="train", batch_size=2, seed=0, train=True)
    data.DatasetOptions(name="digits").check_split("train")   # other datasets need no file


def test_default_drop_remainder_drops_when_training_and_pads_when_evaluating():
    """Train: full batches only (1437 // 100 = 14 per epoch); eval: one padded pass over
    the 360 eval digits (ceil(360 / 100) = 4 batches, the last with 60 real examples)."""
    train_batches, train_info = data.build(digits_config(prefetch=0), split="train",
                                           batch_size=100, seed=0, train=True)
    assert train_info.num_examples == 1437
    for batch in itertools.islice(train_batches, 30):
        assert batch["mask"].all() and batch["image"].shape == (100, 8, 8, 1)
    eval_batches, eval_info = data.build(digits_config(), split="eval", batch_size=100,
                                         seed=0, train=False)
    masks = [batch["mask"] for batch in eval_batches]
    assert len(eval_batches) == len(masks) == 4 and eval_info.num_examples == 360
    assert [mask.sum() for mask in masks] == [100, 100, 100, 60]


def test_build_returns_dataset_info_of_the_split():
    _, info = data.build(digits_config(), split="eval", batch_size=8, seed=0, train=False)
    assert info == data.DatasetInfo("digits", 10, 360, (8, 8, 1))


def test_prefetch_setting_does_not_change_the_batches():
    """Prefetching (a background thread) yields exactly the batches of the plain pipeline,
    in every epoch."""
    plain, _ = data.build(digits_config(prefetch=0), split="train", batch_size=32, seed=1, train=True)
    ahead, _ = data.build(digits_config(prefetch=3), split="train", batch_size=32, seed=1, train=True)
    assert isinstance(ahead, data.Prefetched) and not isinstance(plain, data.Prefetched)
    for plain_batches, ahead_batches in [(plain, ahead), (plain.epoch(4), ahead.epoch(4))]:
        for a, b in zip(itertools.islice(plain_batches, 50), itertools.islice(ahead_batches, 50), strict=True):
            for key in ("image", "label", "mask"):
                np.testing.assert_array_equal(a[key], b[key])
