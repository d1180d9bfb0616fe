"""glif_jax.analysis: learned values per GLIF layer, network order, names, tidy tables.

The references are NumPy: ``1 / (1 + exp(-logit))`` of hand-chosen logits in a hand-built
parameter tree whose key order differs from the network order (as after ``jit`` or a
checkpoint restore, which sort the keys).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from glif_jax.analysis import (
    PARAMETER_LABELS,
    initial_distributions,
    network_order,
    neuron_layers,
    short_layer_name,
    summary_table,
    values_table,
    write_table,
)
from glif_jax.layers import GLIF
from glif_jax.neuron import PARAM_NAMES


def numpy_sigmoid(x):
    return 1.0 / (1.0 + np.exp(-np.asarray(x, np.float64)))


def glif_logits(offset: float, channels: int, time_steps: int) -> dict[str, np.ndarray]:
    """Distinct logits for every parameter: ``offset + 0.1 * name index + 0.01 * channel``."""
    logits = {}
    for index, name in enumerate(PARAM_NAMES):
        base = offset + 0.1 * index + 0.01 * np.arange(channels, dtype=np.float32)
        logits[name] = np.tile(base, (time_steps, 1)) + 0.5 * np.arange(time_steps)[:, None] if name == "cond" else base
    return {name: value.astype(np.float32) for name, value in logits.items()}


# Keys in alphabetical order, as jit / orbax return them; the network runs stem -> block.
HAND_BUILT = {
    "head1": {"kernel": np.ones((4, 3), np.float32)},
    "stage1_block1": {
        "conv_norm1": {"conv": {"kernel": np.ones((3, 3, 2, 4), np.float32)}},
        "neuron1": glif_logits(-1.0, channels=4, time_steps=2),
        "neuron_out": glif_logits(1.0, channels=4, time_steps=2),
    },
    "stem": {"neuron": glif_logits(0.0, channels=2, time_steps=2)},
}
NETWORK_ORDER = ["stem/neuron", "stage1_block1/neuron1", "stage1_block1/neuron_out"]


def test_values_order_and_names_of_a_hand_built_tree():
    layers = neuron_layers({"params": HAND_BUILT}, order=NETWORK_ORDER)
    assert [layer.path for layer in layers] == NETWORK_ORDER
    assert [layer.name for layer in layers] == ["stem", "s1b1.n1", "s1b1.out"]
    assert [layer.index for layer in layers] == [0, 1, 2]
    for layer in layers:
        module, leaf = layer.path.split("/")
        logits = HAND_BUILT[module][leaf]
        assert list(layer.values) == list(PARAM_NAMES)
        for name in PARAM_NAMES:
            assert layer.values[name].shape == logits[name].shape
            np.testing.assert_allclose(layer.values[name], numpy_sigmoid(logits[name]), rtol=1e-6)
    assert (layers[0].channels, layers[0].time_steps) == (2, 2)
    assert (layers[1].channels, layers[1].time_steps) == (4, 2)


def test_without_order_the_tree_order_is_kept_and_extra_layers_follow_the_ordered_ones():
    assert [layer.path for layer in neuron_layers(HAND_BUILT)] == [
        "stage1_block1/neuron1", "stage1_block1/neuron_out", "stem/neuron"]
    partial = neuron_layers(HAND_BUILT, order=["stem/neuron"])
    assert [layer.path for layer in partial] == ["stem/neuron", "stage1_block1/neuron1", "stage1_block1/neuron_out"]


def test_bad_inputs_are_clear_errors():
    with pytest.raises(ValueError, match="no neuron layer"):
        neuron_layers({"dense": {"kernel": np.ones((2, 2))}})
    with pytest.raises(ValueError, match="not neuron layers"):
        neuron_layers(HAND_BUILT, order=["stem/neuron", "stage9_block9/neuron1"])
    with pytest.raises(TypeError, match="params"):
        neuron_layers([1, 2, 3])


def test_layer_wise_and_lif_layers():
    tree = {"a": {"neuron": {"tau": np.float32(0.3), "v_th": np.float32(-2.0)}},
            "b": {"neuron": {name: (np.zeros(3, np.float32) if name == "cond" else np.float32(0.7))
                             for name in PARAM_NAMES}}}
    lif, layer_wise = neuron_layers(tree)
    assert list(lif.values) == ["tau", "v_th"] and lif.time_steps is None
    np.testing.assert_allclose(lif.values["v_th"], numpy_sigmoid(-2.0), rtol=1e-6)  # a threshold, never negative
    assert layer_wise.channels == 1 and layer_wise.time_steps == 3


@pytest.mark.parametrize("path, short", [
    ("stem/neuron", "stem"), ("conv2/neuron", "conv2"), ("stage3_block2/neuron1", "s3b2.n1"),
    ("stage1_block1/neuron_out", "s1b1.out"), ("stage2_block1/unit2/neuron", "s2b1.u2"), ("glif", "glif"),
])
def test_short_layer_names(path, short):
    assert short_layer_name(path) == short


def test_colliding_short_names_fall_back_to_full_paths():
    tree = {"stage1_block1": {"neuron1": glif_logits(0.0, 1, 1)}, "s1b1": {"n1": glif_logits(0.0, 1, 1)},
            "stem": {"neuron": glif_logits(0.0, 1, 1)}}
    names = [layer.name for layer in neuron_layers(tree)]
    assert names == ["stage1_block1.neuron1", "s1b1.n1", "stem"]


class CallOrderNet(nn.Module):
    """GLIF layers called in an order that is not the alphabetical order of their names."""

    @nn.compact
    def __call__(self, x, train: bool):
        del train
        x = GLIF(name="zeta")(x)
        x = nn.Dense(3, name="dense")(x)
        return GLIF(name="alpha_last")(x)


def test_network_order_follows_the_calls_not_the_sorted_keys():
    model = CallOrderNet()
    example = jnp.zeros((2, 1, 3))
    order = network_order(model, example, train=False)
    assert order == ["zeta", "alpha_last"]
    params = jax.jit(lambda x: model.init(jax.random.PRNGKey(0), x, train=False))(example)["params"]
    assert list(params) == sorted(params)  # what jit does to the keys
    assert [layer.path for layer in neuron_layers(params, order)] == ["zeta", "alpha_last"]


def test_network_order_of_a_registry_resnet():
    from glif_jax import models

    model = models.get_model("resnet18", num_classes=10, time_steps=2)
    order = network_order(model, jax.ShapeDtypeStruct((1, 32, 32, 3), jnp.float32), train=False)
    assert len(order) == 17  # stem + 8 blocks x 2 neurons (the paper's architectures)
    assert order[:3] == ["stem/neuron", "stage1_block1/neuron1", "stage1_block1/neuron_out"]
    assert order[-1] == "stage4_block2/neuron_out"


def test_values_table_is_tidy_and_round_trips_through_csv_and_json(tmp_path):
    layers = neuron_layers(HAND_BUILT, order=NETWORK_ORDER)
    table = values_table(layers, step=7)
    expected_rows = sum(np.size(value) for layer in layers for value in layer.values.values())
    assert len(table) == expected_rows
    assert list(table.columns) == ["layer_index", "layer", "path", "parameter", "symbol", "group", "channel",
                                   "time_step", "value", "step"]
    assert set(table["step"]) == {7}
    cond = table[(table.layer == "s1b1.n1") & (table.parameter == "cond")]
    logits = HAND_BUILT["stage1_block1"]["neuron1"]["cond"]
    for row in cond.itertuples():
        assert row.value == pytest.approx(numpy_sigmoid(logits[row.time_step, row.channel]), rel=1e-6)
    alpha = table[(table.layer == "stem") & (table.parameter == "alpha")]
    assert alpha["time_step"].isna().all() and list(alpha["channel"]) == [0, 1]
    assert set(table.loc[table.parameter.isin(["alpha", "beta", "gamma"]), "group"]) == {"gate"}
    assert set(table.loc[table.parameter == "v_th", "symbol"]) == {PARAMETER_LABELS["v_th"].symbol}

    for suffix, read in ((".csv", pd.read_csv), (".json", pd.read_json)):
        back = read(write_table(table, tmp_path / f"values{suffix}"))
        assert len(back) == len(table)
        np.testing.assert_allclose(back["value"], table["value"], rtol=1e-9)
        assert back["time_step"].isna().sum() == table["time_step"].isna().sum()
    with pytest.raises(ValueError, match="csv"):
        write_table(table, tmp_path / "values.xlsx")


def test_summary_table_quantiles():
    layers = neuron_layers(HAND_BUILT, order=NETWORK_ORDER)
    summary = summary_table(layers)
    row = summary[(summary.layer == "s1b1.out") & (summary.parameter == "cond")].iloc[0]
    values = numpy_sigmoid(HAND_BUILT["stage1_block1"]["neuron_out"]["cond"]).ravel()
    assert row["count"] == values.size
    for column, quantile in (("q1", 0.25), ("median", 0.5), ("q3", 0.75)):
        assert row[column] == pytest.approx(np.quantile(values, quantile), rel=1e-6)
    assert (row["min"], row["max"]) == pytest.approx((values.min(), values.max()), rel=1e-6)


def test_initial_distributions_match_a_freshly_initialised_glif_layer():
    """The GLIF paper's neuron equations: gates sigmoid(U[-0.2, 0.2)) = [0.4502, 0.5498); CIFAR primitives constant."""
    channels = 20000
    params = GLIF().init(jax.random.PRNGKey(3), jnp.zeros((2, 1, channels)))["params"]
    initial = initial_distributions(PARAM_NAMES, "cifar")
    assert (initial["alpha"].low, initial["alpha"].high) == pytest.approx((0.4502, 0.5498), abs=1e-4)
    for name in PARAM_NAMES:
        values = numpy_sigmoid(params[name]).ravel()
        start = initial[name]
        assert start.low - 1e-6 <= values.min() and values.max() <= start.high + 1e-6
        quantiles = np.quantile(values, [0.25, 0.5, 0.75])
        np.testing.assert_allclose(quantiles, [start.lower_quartile, start.median, start.upper_quartile],
                                   atol=2e-3)
    assert initial["tau"].is_constant and initial["tau"].low == 0.25
    assert initial_distributions(("cond",), "imagenet_t6")["cond"].low == 0.9
