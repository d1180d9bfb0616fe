"""glif_jax.train.steps / glif_jax.train.metrics / glif_jax.train.evaluate: the pure steps and exact metrics (the paper's tdBN and time-merging conventions).

References are NumPy, written from the definitions: softmax cross-entropy of the
time-averaged logits, top-k membership, masked averages over a whole split.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from glif_jax import parallel
from glif_jax.data import batching
from glif_jax.data.options import BatchRequest
from glif_jax.train import metrics, steps
from glif_jax.train.evaluate import evaluate
from glif_jax.train.state import create_train_state
from tests.comparison import assert_bit_identical, assert_tree_close
from tests.train_standins import IMAGE_SHAPE, NUM_CLASSES, TinyBatchNormNet, dataset


def numpy_cross_entropy(logits, labels):
    logits = np.asarray(logits, np.float64)
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return -log_probs[np.arange(len(labels)), labels]


def numpy_top_k(logits, labels, k):
    order = np.argsort(-np.asarray(logits), axis=1, kind="stable")[:, :k]
    return (order == np.asarray(labels)[:, None]).any(axis=1).astype(np.float64)


@pytest.fixture(scope="module")
def tiny():
    model = TinyBatchNormNet()
    optimizer = optax.sgd(0.1, momentum=0.9)
    state = create_train_state(model, optimizer, rng=jax.random.PRNGKey(0), input_shape=IMAGE_SHAPE)
    train_fn = jax.jit(functools.partial(steps.train_step, model=model, optimizer=optimizer))
    eval_fn = jax.jit(functools.partial(steps.eval_step, model=model))
    images, labels = dataset(3, 24)
    return dict(model=model, optimizer=optimizer, state=state, train_fn=train_fn, eval_fn=eval_fn,
                images=images, labels=labels)


def test_cross_entropy_and_top_k_match_numpy():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(32, 10)).astype(np.float32)
    labels = rng.integers(0, 10, 32)
    np.testing.assert_allclose(metrics.cross_entropy(jnp.asarray(logits), jnp.asarray(labels)),
                               numpy_cross_entropy(logits, labels), rtol=1e-5, atol=1e-6)
    for k in (1, 5):
        np.testing.assert_array_equal(metrics.top_k_correct(jnp.asarray(logits), jnp.asarray(labels), k),
                                      numpy_top_k(logits, labels, k))
    # k larger than the number of classes: always correct
    np.testing.assert_array_equal(metrics.top_k_correct(jnp.asarray(logits[:, :3]), jnp.zeros(32, int), 5), 1.0)


def test_ties_do_not_count_as_correct():
    """Equal logits (e.g. an untrained or dead network) rank classes by index, like argmax:
    only label 0 is top-1 and labels 0..4 are top-5."""
    logits = jnp.zeros((10, 10))
    labels = jnp.arange(10)
    np.testing.assert_array_equal(metrics.top_k_correct(logits, labels, 1), [1] + [0] * 9)
    np.testing.assert_array_equal(metrics.top_k_correct(logits, labels, 5), [1] * 5 + [0] * 5)
    tied = jnp.array([[1.0, 3.0, 3.0, 0.0]])
    np.testing.assert_array_equal(metrics.top_k_correct(tied, jnp.array([2]), 1), [0])
    np.testing.assert_array_equal(metrics.top_k_correct(tied, jnp.array([2]), 2), [1])


def test_non_finite_logits_never_count_as_correct():
    """A NaN or infinite logit in a row makes that row wrong for top-1 and top-5, whatever
    the label (a NaN row would otherwise rank no class ahead of the label)."""
    logits = jnp.array([[np.nan] * 4, [1.0, np.inf, 0.0, 0.0], [0.0, 1.0, np.nan, 0.0], [3.0, 1.0, 2.0, 0.0]])
    labels = jnp.array([0, 1, 1, 0])
    np.testing.assert_array_equal(metrics.top_k_correct(logits, labels, 1), [0, 0, 0, 1])
    np.testing.assert_array_equal(metrics.top_k_correct(logits, labels, 5), [0, 0, 0, 1])
    sums = metrics.batch_sums(logits, labels)
    assert float(sums["top1"]) == 1 and float(sums["top5"]) == 1 and not np.isfinite(float(sums["loss"]))


def test_masked_sums_ignore_padding():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(6, 4)).astype(np.float32)
    labels = rng.integers(0, 4, 6)
    mask = np.array([1, 1, 1, 1, 0, 0], np.float32)
    sums = metrics.batch_sums(jnp.asarray(logits), jnp.asarray(labels), jnp.asarray(mask))
    assert float(sums["count"]) == 4
    np.testing.assert_allclose(float(sums["loss"]), numpy_cross_entropy(logits[:4], labels[:4]).sum(), rtol=1e-5)
    assert float(sums["top1"]) == numpy_top_k(logits[:4], labels[:4], 1).sum()


def test_mean_accumulator_is_exact_over_uneven_batches():
    totals = metrics.MeanAccumulator()
    totals.add({"top1": 3.0, "count": 4.0})
    totals.add({"top1": 1.0, "count": 1.0})
    assert totals.result() == {"top1": 4.0 / 5.0, "count": 5.0}
    with pytest.raises(ValueError, match="no examples"):
        metrics.MeanAccumulator().result()


def test_train_step_loss_is_cross_entropy_of_the_model_logits(tiny):
    """The reported loss sum is the NumPy cross-entropy of the logits the model gives in train
    mode; the update is SGD on the gradient of the mean of that loss."""
    state, batch = tiny["state"], {"image": tiny["images"][:8], "label": tiny["labels"][:8]}
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    logits, _ = tiny["model"].apply(variables, batch["image"], train=True, mutable=["batch_stats"])
    new_state, sums = tiny["train_fn"](state, batch)
    np.testing.assert_allclose(float(sums["loss"]), numpy_cross_entropy(logits, batch["label"]).sum(), rtol=1e-5)
    assert float(sums["top1"]) == numpy_top_k(logits, batch["label"], 1).sum()
    assert float(sums["count"]) == 8
    assert int(new_state.step) == 1

    def mean_loss(params):
        out, _ = tiny["model"].apply({"params": params, "batch_stats": state.batch_stats}, batch["image"],
                                     train=True, mutable=["batch_stats"])
        return jnp.mean(-jax.nn.log_softmax(out)[jnp.arange(8), batch["label"]])

    grads = jax.grad(mean_loss)(state.params)  # first momentum step: update = -lr * grad
    expected = jax.tree.map(lambda p, g: p - 0.1 * g, state.params, grads)
    assert_tree_close(new_state.params, expected, rtol=1e-5, atol=1e-6)
    assert float(sums["nonfinite"]) == 0


def test_train_step_updates_running_statistics_and_is_pure(tiny):
    state, batch = tiny["state"], {"image": tiny["images"][:8], "label": tiny["labels"][:8]}
    first_state, first_sums = tiny["train_fn"](state, batch)
    again_state, again_sums = tiny["train_fn"](state, batch)
    assert_bit_identical((again_state, again_sums), (first_state, first_sums))
    mean_before = state.batch_stats["BatchNorm_0"]["mean"]
    mean_after = first_state.batch_stats["BatchNorm_0"]["mean"]
    assert not np.allclose(mean_before, mean_after)


def test_eval_uses_running_statistics(tiny):
    """Eval mode: an example's logits do not depend on the rest of its batch."""
    state = tiny["state"]
    images, labels = tiny["images"], tiny["labels"]
    alone = tiny["eval_fn"](state, {"image": images[:1], "label": labels[:1]})
    batched = tiny["eval_fn"](state, {"image": images[:8], "label": labels[:8],
                                      "mask": np.eye(1, 8, dtype=np.float32)[0]})
    np.testing.assert_allclose(float(batched["loss"]), float(alone["loss"]), rtol=1e-6)


def test_evaluate_is_exact_over_an_eval_pass_padded_and_masked_once(tiny, monkeypatch):
    """An eval pass of the data pipelines' batching over 21 examples: batches of 8, 8 and
    5 + 3 padding rows, padded and masked once (by ``with_mask``, one call per batch), not
    again by the loop; the result is exact over the 21 examples."""
    state = tiny["state"]
    images, labels = tiny["images"][:21], tiny["labels"][:21]
    padded = []
    with_mask = batching.with_mask
    monkeypatch.setattr(batching, "with_mask", lambda batch, size: (padded.append(len(batch["label"])),
                                                                    with_mask(batch, size))[1])
    eval_pass = batching.OrderedPass(images, labels, lambda raw: raw, BatchRequest("eval", 8, 0, train=False))
    seen = []

    def eval_fn(state, batch):
        seen.append(np.asarray(batch["mask"]))
        return tiny["eval_fn"](state, batch)

    result = evaluate(eval_fn, state, eval_pass, strategy=parallel.SingleDevice(), batch_size=8)
    assert padded == [8, 8, 5]
    np.testing.assert_array_equal(np.concatenate(seen), [1] * 21 + [0] * 3)
    logits = tiny["model"].apply({"params": state.params, "batch_stats": state.batch_stats}, images, train=False)
    assert result["count"] == 21
    np.testing.assert_allclose(result["loss"], numpy_cross_entropy(logits, labels).mean(), rtol=1e-5)
    assert result["top1"] == pytest.approx(numpy_top_k(logits, labels, 1).mean())
    assert result["top5"] == 1.0  # 4 classes: always in the top 5


def test_evaluate_refuses_batches_that_are_not_padded_and_masked(tiny):
    """The loop relies on the data pipelines' padding: a short or unmasked batch is an error."""
    images, labels = tiny["images"], tiny["labels"]
    short = batching.with_mask({"image": images[:5], "label": labels[:5]}, 5)
    unmasked = {"image": images[:8], "label": labels[:8]}
    for batch, message in [(short, "has 5 rows: "), (unmasked, 'has 8 rows and no "mask"')]:
        with pytest.raises(ValueError, match=message + '.*exactly the eval batch size 8 with a "mask"'):
            evaluate(tiny["eval_fn"], tiny["state"], [batch], strategy=parallel.SingleDevice(), batch_size=8)


def test_half_precision_computes_in_bfloat16_with_float32_params_and_loss(tiny):
    model = TinyBatchNormNet(dtype=jnp.bfloat16)
    optimizer = optax.sgd(0.1)
    state = create_train_state(model, optimizer, rng=jax.random.PRNGKey(0), input_shape=IMAGE_SHAPE)
    step = functools.partial(steps.train_step, model=model, optimizer=optimizer)
    batch = {"image": tiny["images"][:8], "label": tiny["labels"][:8]}
    assert "bf16" in str(jax.make_jaxpr(step)(state, batch))
    new_state, sums = jax.jit(step)(state, batch)
    assert {leaf.dtype for leaf in jax.tree.leaves(new_state.params)} == {jnp.dtype(jnp.float32)}
    assert sums["loss"].dtype == jnp.float32
    assert np.isfinite(float(sums["loss"]))


class FakeSpikingLayer(nn.Module):
    """Sows `rates` [T, C] the way the GLIF module does (here: a sigmoid, broadcast over T=2)."""

    scale: float

    @nn.compact
    def __call__(self, x):
        rates = jnp.broadcast_to(jax.nn.sigmoid(self.scale * x).mean(axis=0), (2, x.shape[-1]))
        if self.is_mutable_collection("spike_stats"):
            self.sow("spike_stats", "rates", rates, init_fn=lambda: None, reduce_fn=lambda _, new: new)
        return x


class SowingNet(nn.Module):
    @nn.compact
    def __call__(self, images, train: bool):
        x = nn.Dense(3)(images.reshape(images.shape[0], -1))
        x = FakeSpikingLayer(1.0, name="glif1")(x)
        x = FakeSpikingLayer(0.5, name="glif2")(x)
        return nn.Dense(NUM_CLASSES)(x)


def test_spike_stats_are_logged_only_when_asked(tiny):
    model, optimizer = SowingNet(), optax.sgd(0.0)
    state = create_train_state(model, optimizer, rng=jax.random.PRNGKey(0), input_shape=IMAGE_SHAPE)
    batch = {"image": tiny["images"][:8], "label": tiny["labels"][:8]}
    _, plain = steps.train_step(state, batch, model=model, optimizer=optimizer)
    assert not any(name.startswith("spikes/") for name in plain)
    _, sums = steps.train_step(state, batch, model=model, optimizer=optimizer, spike_stats=True)
    x = np.asarray(batch["image"]).reshape(8, -1) @ np.asarray(state.params["Dense_0"]["kernel"])
    x = x + np.asarray(state.params["Dense_0"]["bias"])
    expected = {"glif1": (1 / (1 + np.exp(-x))).mean(), "glif2": (1 / (1 + np.exp(-0.5 * x))).mean()}
    for layer, rate in expected.items():
        np.testing.assert_allclose(float(sums[f"spikes/{layer}/rate"]) / 8, rate, rtol=1e-5)
    np.testing.assert_allclose(float(sums["spikes/network/rate"]) / 8, np.mean(list(expected.values())), rtol=1e-5)
    eval_sums = steps.eval_step(state, batch, model=model, spike_stats=True)
    for layer, rate in expected.items():
        np.testing.assert_allclose(float(eval_sums[f"spikes/{layer}/rate"]) / 8, rate, rtol=1e-5)
    assert not any(name.startswith("spikes/") for name in steps.eval_step(state, batch, model=model))


@pytest.mark.parametrize("skip_nonfinite", [False, True])
def test_a_non_finite_step_is_flagged_and_skipped_only_when_asked(tiny, skip_nonfinite):
    """A NaN in the images makes the loss NaN: ``nonfinite`` is 1. Skipping keeps params,
    batch statistics and optimizer state exactly, advances the step and zeroes the sums."""
    model, optimizer, state = tiny["model"], tiny["optimizer"], tiny["state"]
    train_fn = jax.jit(functools.partial(steps.train_step, model=model, optimizer=optimizer,
                                         skip_nonfinite=skip_nonfinite))
    images = np.array(tiny["images"][:8])
    images[3, 0, 0, 0] = np.nan
    new_state, sums = train_fn(state, {"image": images, "label": tiny["labels"][:8]})
    assert float(sums["nonfinite"]) == 1 and int(new_state.step) == int(state.step) + 1
    if skip_nonfinite:
        assert_bit_identical((new_state.params, new_state.batch_stats, new_state.opt_state),
                             (state.params, state.batch_stats, state.opt_state))
        assert {name: float(value) for name, value in sums.items() if name != "nonfinite"} == {
            "loss": 0.0, "top1": 0.0, "top5": 0.0, "count": 0.0}
    else:
        assert not np.isfinite(np.asarray(new_state.params["Dense_0"]["kernel"])).all()
        assert not np.isfinite(float(sums["loss"]))


class SquareRootGain(nn.Module):
    """BatchNorm, then dense logits times ``1 + sqrt(gain)`` with ``gain`` a parameter starting
    at 0: the loss is finite, but its gradient in ``gain`` is infinite (d sqrt(g)/dg at 0)."""

    @nn.compact
    def __call__(self, images, train: bool):
        x = nn.BatchNorm(use_running_average=not train, momentum=0.9)(images.reshape(images.shape[0], -1))
        gain = self.param("gain", nn.initializers.zeros, ())
        return nn.Dense(NUM_CLASSES)(x) * (1 + jnp.sqrt(gain))


@pytest.mark.parametrize("skip_nonfinite", [False, True])
def test_a_finite_loss_with_a_non_finite_gradient_is_skipped_only_when_asked(tiny, skip_nonfinite):
    """The branch a NaN loss does not reach: with a finite loss and an infinite gradient,
    skipping flags the step and keeps params, batch statistics and optimizer state bit for
    bit; without skipping the loss is all that is checked, so the step is applied and the
    parameters stop being finite (the next step's loss then gives the divergence away)."""
    model, optimizer = SquareRootGain(), optax.sgd(0.1, momentum=0.9)
    state = create_train_state(model, optimizer, rng=jax.random.PRNGKey(0), input_shape=IMAGE_SHAPE)
    batch = {"image": tiny["images"][:8], "label": tiny["labels"][:8]}
    grads = jax.grad(lambda params: jnp.mean(metrics.cross_entropy(
        model.apply({"params": params, "batch_stats": state.batch_stats}, batch["image"], train=True,
                    mutable=["batch_stats"])[0], batch["label"])))(state.params)
    assert not np.isfinite(float(grads["gain"]))   # the case under test: an infinite gradient ...
    new_state, sums = jax.jit(functools.partial(steps.train_step, model=model, optimizer=optimizer,
                                                skip_nonfinite=skip_nonfinite))(state, batch)
    assert int(new_state.step) == int(state.step) + 1
    if skip_nonfinite:
        assert float(sums["nonfinite"]) == 1
        assert_bit_identical((new_state.params, new_state.batch_stats, new_state.opt_state),
                             (state.params, state.batch_stats, state.opt_state))
        assert {name: float(value) for name, value in sums.items() if name != "nonfinite"} == {
            "loss": 0.0, "top1": 0.0, "top5": 0.0, "count": 0.0}
    else:
        assert float(sums["nonfinite"]) == 0 and np.isfinite(float(sums["loss"]))   # ... under a finite loss
        assert not np.isfinite(np.asarray(new_state.params["gain"]))
