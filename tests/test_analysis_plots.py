"""glif_jax.analysis figures: panels, what they draw, labels (the paper's appendix A.1, the paper's Figs. 1-2).

The figures are inspected as matplotlib objects: panel count and identity (each data panel
carries the label "panel:<quantity>"), plotted data against NumPy, titles and axis labels.
"""

from __future__ import annotations

import numpy as np
import pytest

from glif_jax.analysis import (
    NeuronLayer,
    initial_distributions,
    plot_conductance,
    plot_evolution,
    plot_firing_rates,
    plot_gates,
    plot_primitives,
    save_figure,
)
from glif_jax.analysis.plots.style import MEDIAN_LABEL, panels
from glif_jax.neuron import PARAM_NAMES

NAMES = ["stem", "s1b1.n1", "s1b1.out"]
PATHS = ["stem/neuron", "stage1_block1/neuron1", "stage1_block1/neuron_out"]
TIME_STEPS = 2


def make_layers(shift: float = 0.0, names=PARAM_NAMES, channels=(4, 6, 6), seed=0) -> list[NeuronLayer]:
    rng = np.random.default_rng(seed)
    layers = []
    for index, (path, name, count) in enumerate(zip(PATHS, NAMES, channels)):
        values = {key: np.clip(rng.uniform(0.1, 0.9, (TIME_STEPS, count) if key == "cond" else count) + shift,
                               0.01, 0.99) for key in names}
        layers.append(NeuronLayer(index, path, name, values))
    return layers


def panel_names(figure) -> list[str]:
    return [ax.get_label().split(":", 1)[1] for ax in panels(figure)]


def tick_labels(ax) -> list[str]:
    return [label.get_text() for label in ax.get_xticklabels()]


INITIAL = initial_distributions(PARAM_NAMES, "cifar")


def test_gate_figure_has_one_panel_per_gate_with_layers_in_order_and_the_initial_range():
    figure = plot_gates(make_layers(), initial=INITIAL, run_label="tiny run")
    assert panel_names(figure) == ["alpha", "beta", "gamma"]
    alpha = panels(figure)[0]
    assert tick_labels(panels(figure)[-1]) == NAMES
    assert "exponential (1) vs linear (0)" in alpha.get_title(loc="left")
    assert "0.4502" in alpha.get_title(loc="left")
    assert "after sigmoid" in alpha.get_ylabel()
    assert "network order" in panels(figure)[-1].get_xlabel()
    assert "tiny run" in figure.get_suptitle()
    band = [patch for patch in alpha.patches if patch.get_alpha() == pytest.approx(0.15)]
    assert len(band) == 1
    low, height = band[0].get_y(), band[0].get_height()
    assert (low, low + height) == pytest.approx((INITIAL["alpha"].low, INITIAL["alpha"].high), abs=1e-6)
    # one strip point per channel and layer
    points = np.concatenate([collection.get_offsets() for collection in alpha.collections])
    assert len(points) == 4 + 6 + 6
    legend_texts = [text.get_text() for legend in figure.legends for text in legend.get_texts()]
    assert "initial range (shaded)" in legend_texts and "one channel" in legend_texts


def test_primitive_figure_panels_and_medians():
    layers = make_layers()
    figure = plot_primitives(layers, initial=INITIAL)
    assert panel_names(figure) == ["tau", "lam", "v_th", "v_re"]   # GLIF's primitives in its declared order
    v_th = panels(figure)[2]
    medians = [(np.mean(line.get_xdata()), line.get_ydata()[0]) for line in v_th.lines
               if line.get_label() == MEDIAN_LABEL]
    expected = [(index, np.median(layer.values["v_th"])) for index, layer in enumerate(layers)]
    np.testing.assert_allclose(sorted(medians), expected)
    dashed = [line for line in v_th.lines if line.get_linestyle() == "--"]
    assert dashed and dashed[0].get_ydata()[0] == pytest.approx(0.5)  # initial V_th


def test_layers_of_a_neuron_without_gates_have_no_gate_figure():
    with pytest.raises(ValueError, match="their neuron has no gates"):
        plot_gates(make_layers(names=("tau", "v_th")))
    assert panel_names(plot_primitives(make_layers(names=("tau", "v_th")))) == ["tau", "v_th"]


def test_conductance_figure_has_one_box_per_layer_and_time_step():
    figure = plot_conductance(make_layers(), initial=INITIAL)
    assert panel_names(figure) == ["cond"]
    boxes = [patch for patch in panels(figure)[0].patches if patch.get_facecolor()[3] == 1.0]
    assert len(boxes) == len(NAMES) * TIME_STEPS
    assert tick_labels(panels(figure)[0]) == NAMES


def test_evolution_figure_draws_median_and_quartiles_per_layer_from_the_initialisation():
    snapshots = [(2.0, make_layers(0.1, seed=1)), (1.0, make_layers(0.0, seed=2))]
    figure = plot_evolution(snapshots, initial=INITIAL, x_label="epoch")
    assert panel_names(figure) == list(PARAM_NAMES)
    alpha = panels(figure)[0]
    assert len(alpha.containers) == len(NAMES)  # one error-bar line per layer
    line = alpha.containers[1].lines[0]          # layer 1 (s1b1.n1)
    values_epoch1 = snapshots[1][1][1].values["alpha"]
    values_epoch2 = snapshots[0][1][1].values["alpha"]
    np.testing.assert_allclose(line.get_ydata(), [0.5, np.median(values_epoch1), np.median(values_epoch2)])
    x = line.get_xdata()
    assert x[0] < 0.5 < x[1] < 1.5 < x[2] < 2.5  # initialisation, epochs 1 and 2 (dodged a little)
    assert "epoch" in alpha.get_xlabel() or "epoch" in panels(figure)[-1].get_xlabel()
    legend_texts = [text.get_text() for legend in figure.legends for text in legend.get_texts()]
    assert legend_texts[:3] == NAMES
    with pytest.raises(ValueError, match="other layers"):
        plot_evolution([(1.0, make_layers()), (2.0, make_layers()[:2])])


def test_firing_rate_figure_shows_rates_per_time_step_per_channel_and_silent_saturated_fractions():
    rng = np.random.default_rng(0)
    rates = {path: rng.uniform(0.05, 0.6, (TIME_STEPS, count)) for path, count in zip(PATHS, (4, 6, 6))}
    rates[PATHS[1]][:, :3] = 0.0   # 3 of 6 channels silent
    rates[PATHS[2]][:, 0] = 1.0    # 1 of 6 saturated
    shuffled = dict(reversed(list(rates.items())))
    figure = plot_firing_rates(shuffled, order=PATHS, run_label="tiny run", batch_label="8 examples")
    assert panel_names(figure) == ["rate_per_time_step", "rate_per_channel", "silent_saturated"]
    heat, _, fractions = panels(figure)
    expected = np.stack([rates[path].mean(axis=1) for path in PATHS], axis=1)  # [T, layers]
    np.testing.assert_allclose(np.asarray(heat.images[0].get_array()), expected)
    silent_bars, saturated_bars = fractions.containers
    np.testing.assert_allclose([bar.get_height() for bar in silent_bars], [0.0, 50.0, 0.0])
    np.testing.assert_allclose([bar.get_height() for bar in saturated_bars], [0.0, 0.0, 100 / 6])
    assert tick_labels(fractions) == NAMES
    assert "8 examples" in figure.get_suptitle()
    with pytest.raises(ValueError, match="no rates"):
        plot_firing_rates(rates, order=PATHS + ["missing/neuron"])


def test_save_figure_writes_png_and_pdf(tmp_path):
    written = save_figure(plot_gates(make_layers()), tmp_path, "gates", ("png", "pdf"))
    assert [path.name for path in written] == ["gates.png", "gates.pdf"]
    assert written[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert written[1].read_bytes()[:5] == b"%PDF-"
    with pytest.raises(ValueError, match="formats"):
        save_figure(plot_gates(make_layers()), tmp_path, "gates", ("bmp",))
