"""glif-plot (glif_jax.analysis.cli): figures and tables from a run's work directory (the paper's appendix A.1).

The run is made here with glif_jax.checkpoint directly (registry model "tiny_convnet" on
the embedded digits, T = 2, three checkpoints with drifted parameters), independent of the
training loop; one end-to-end test trains 2 steps with train.train_and_evaluate first.

What the tables hold and what the figures draw (read back from the matplotlib objects
``glif-plot`` saves) is checked against values computed here with NumPy from the saved
parameters: the sigmoid of every stored logit (the GLIF paper's gates and primitives live
in (0, 1)), per layer in network order, and the firing rates of the spikes the model returns.
"""

from __future__ import annotations

import dataclasses
import struct
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_rgba
from matplotlib.patches import PathPatch, Rectangle

from glif_jax.configs import default
from glif_jax import models
from glif_jax.analysis import report, run_model
from glif_jax.analysis.cli import main
from glif_jax.analysis.plots.style import MEDIAN_LABEL, panels, save_figure
from glif_jax.analysis.runs import load_checkpoint, open_run
from glif_jax.checkpoint import CheckpointError, Checkpointer
from glif_jax.workdir import save_config
from glif_jax.layers import GLIF
from glif_jax.neuron import GATE_NAMES, PARAM_NAMES
from tests.comparison import assert_tree_close

STEPS = (10, 20, 30)
BEST_STEP = 20
TIME_STEPS = 2
BATCH_SIZE = 16
FIGURES = ("gates", "primitives", "conductance", "evolution", "firing_rates")
LAYERS = ("stem", "conv1")   # tiny_convnet's GLIF layers in network order (stem/neuron, conv1/neuron)
PRIMITIVE_PANELS = ("tau", "lam", "v_th", "v_re")   # GLIF's primitives in their declared order; cond has its own figure


def numpy_sigmoid(x):
    return 1.0 / (1.0 + np.exp(-np.asarray(x, np.float64)))


@dataclasses.dataclass(frozen=True)
class SavedRun:
    """What make_run saved: the config, the parameters at initialisation (never saved as a
    checkpoint), the batch statistics every checkpoint holds, and {step: params}."""

    config: Any
    initial: dict
    batch_stats: dict
    params: dict


def make_run(workdir, *, steps=STEPS, dataset_overrides=None) -> SavedRun:
    """A work directory as glif-train lays it out."""
    config = default.get_config()
    config.model.time_steps = TIME_STEPS
    for key, value in (dataset_overrides or {}).items():
        config.dataset[key] = value
    model = models.ModelOptions.from_config(config.model).build(10)
    variables = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 8, 8, 1)), train=False)
    save_config(workdir, config)
    rng = np.random.default_rng(0)
    saved = {}
    with Checkpointer(workdir / "checkpoints", keep=3, async_save=False) as checkpointer:
        for epoch, step in enumerate(steps, start=1):
            params = jax.tree.map(lambda x: np.asarray(x) + rng.normal(0, 0.2 * epoch, np.shape(x)).astype(np.float32),
                                  variables["params"])
            state = {"step": np.int32(step), "params": params, "batch_stats": variables["batch_stats"],
                     "opt_state": {"momentum": params}, "rng": np.zeros(2, np.uint32)}
            checkpointer.save(step, state, {"epoch": epoch, "eval_top1": 0.5 if step == BEST_STEP else 0.1})
            saved[step] = params
    return SavedRun(config, jax.device_get(variables["params"]), jax.device_get(variables["batch_stats"]), saved)


def learned(params, layer: str, name: str) -> np.ndarray:
    """The constrained value of parameter ``name`` of GLIF layer ``layer`` (``[C]``, ``cond``
    ``[T, C]``): the sigmoid of the stored logit, in float64."""
    return numpy_sigmoid(params[layer]["neuron"][name])


def png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", f"{path} is not a PNG"
    return struct.unpack(">II", data[16:24])


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("run")
    return workdir, make_run(workdir)


class Plotted(NamedTuple):
    status: int
    out: Any
    saved: SavedRun
    figures: dict   # {file stem: the matplotlib Figure glif-plot saved}


@pytest.fixture(scope="module")
def plotted(run, tmp_path_factory):
    """glif-plot on the run; the figures are kept (as they are saved) for inspection."""
    workdir, saved = run
    out = tmp_path_factory.mktemp("figures")
    figures = {}

    def save_and_keep(figure, directory, stem, formats=("png",)):
        figures[stem] = figure
        return save_figure(figure, directory, stem, formats)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(report, "save_figure", save_and_keep)
        status = main([str(workdir), "--out", str(out), "--pdf", "--batch-size", str(BATCH_SIZE)])
    return Plotted(status, out, saved, figures)


def test_glif_plot_writes_every_figure_as_png_and_pdf(plotted):
    status, out, _, figures = plotted
    assert status == 0
    assert sorted(figures) == sorted(FIGURES)
    for stem in FIGURES:
        width, height = png_size(out / f"{stem}.png")
        assert width > 300 and height > 300, stem
        assert (out / f"{stem}.png").stat().st_size > 10_000, stem
        assert (out / f"{stem}.pdf").read_bytes()[:5] == b"%PDF-", stem


def assert_values_table_holds_the_sigmoid_of(table, params):
    """Every row of a learned_values table against the sigmoid of the saved logits, by layer,
    parameter, channel and time step; nothing missing, nothing more."""
    assert set(zip(table.layer, table.parameter)) == {(layer, name) for layer in LAYERS for name in PARAM_NAMES}
    assert len(table) == sum(learned(params, layer, name).size for layer in LAYERS for name in PARAM_NAMES)
    assert set(table[table.group == "gate"].parameter) == set(GATE_NAMES)
    for layer in LAYERS:
        for name in PARAM_NAMES:
            expected = learned(params, layer, name)
            rows = table[(table.layer == layer) & (table.parameter == name)].sort_values(["time_step", "channel"])
            if name == "cond":   # [T, C]
                time_steps, channels = expected.shape
                assert_tree_close(rows["time_step"].to_numpy(np.int64), np.repeat(np.arange(time_steps), channels))
                assert_tree_close(rows["channel"].to_numpy(np.int64), np.tile(np.arange(channels), time_steps))
            else:
                assert rows["time_step"].isna().all(), (layer, name)
                assert_tree_close(rows["channel"].to_numpy(np.int64), np.arange(expected.size))
            assert_tree_close(rows["value"].to_numpy(np.float64), expected.reshape(-1), rtol=1e-6)


def test_learned_values_table_holds_the_latest_checkpoint_in_network_order(plotted):
    _, out, saved, _ = plotted
    table = pd.read_csv(out / "learned_values.csv")
    assert set(table["step"]) == {STEPS[-1]} and set(table["checkpoint"]) == {"latest"}
    layers = table.drop_duplicates("layer_index")[["layer_index", "layer", "path"]].values.tolist()
    assert layers == [[0, "stem", "stem/neuron"], [1, "conv1", "conv1/neuron"]]  # not the sorted key order
    assert_values_table_holds_the_sigmoid_of(table, saved.params[STEPS[-1]])
    json_table = pd.read_json(out / "learned_values.json")
    assert_tree_close(json_table["value"].to_numpy(), table["value"].to_numpy(), rtol=1e-9)


def test_summary_holds_the_quantiles_of_every_checkpoint(plotted):
    _, out, saved, _ = plotted
    summary = pd.read_csv(out / "learned_summary.csv")
    assert len(summary) == len(STEPS) * len(LAYERS) * len(PARAM_NAMES)
    columns = ["count", "mean", "min", "q1", "median", "q3", "max"]
    for epoch, step in enumerate(STEPS, start=1):
        for layer in LAYERS:
            for name in PARAM_NAMES:
                row = summary[(summary.step == step) & (summary.layer == layer) & (summary.parameter == name)]
                assert len(row) == 1 and row["epoch"].item() == epoch, (step, layer, name)
                values = learned(saved.params[step], layer, name).reshape(-1)
                expected = [values.size, values.mean(), values.min(), *np.quantile(values, [0.25, 0.5, 0.75]),
                            values.max()]
                assert_tree_close(row[columns].to_numpy(np.float64)[0], np.array(expected), rtol=1e-6)


# ---- what the figures draw -----------------------------------------------------------
def tick_labels(ax) -> list[str]:
    return [label.get_text() for label in ax.get_xticklabels()]


def panel_names(figure) -> list[str]:
    return [ax.get_label().split(":", 1)[1] for ax in panels(figure)]


def strip_values(ax, position: int) -> np.ndarray:
    """The y of the strip points (one per channel) drawn at layer ``position``, sorted
    (the points are jittered by less than 0.2 in x)."""
    offsets = np.concatenate([np.asarray(collection.get_offsets()) for collection in ax.collections])
    return np.sort(offsets[np.abs(offsets[:, 0] - position) < 0.3, 1])


def boxes(ax) -> list[tuple[float, float, float, float]]:
    """(left, right, bottom, top) of every box of a box plot (box = first to third quartile)."""
    extents = []
    for patch in ax.patches:
        if isinstance(patch, PathPatch):
            vertices = patch.get_path().vertices
            extents.append((vertices[:, 0].min(), vertices[:, 0].max(), vertices[:, 1].min(), vertices[:, 1].max()))
    return extents


def box_at(ax, center: float, width: float) -> tuple[float, float, float]:
    """(first quartile, median, third quartile) of the one box centred at ``center``."""
    found = [box for box in boxes(ax) if abs((box[0] + box[1]) / 2 - center) < width / 4]
    assert len(found) == 1, (center, boxes(ax))
    left, right, q1, q3 = found[0]
    medians = [line.get_ydata()[0] for line in ax.lines
               if len(line.get_xdata()) == 2 and np.allclose(line.get_xdata(), [left, right])
               and line.get_ydata()[0] == line.get_ydata()[1]]
    assert len(medians) == 1, (center, medians)
    return q1, medians[0], q3


@pytest.mark.parametrize("stem,names", [("gates", GATE_NAMES), ("primitives", PRIMITIVE_PANELS)])
def test_distribution_figures_draw_every_channel_of_every_layer_in_network_order(plotted, stem, names):
    """The paper's Figs. 1-2: one panel per parameter; at x = i the i-th layer's values, one
    strip point per channel, and a box with their quartiles."""
    figure, params = plotted.figures[stem], plotted.saved.params[STEPS[-1]]
    assert panel_names(figure) == list(names)
    assert tick_labels(panels(figure)[-1]) == list(LAYERS)
    for ax, name in zip(panels(figure), names):
        for position, layer in enumerate(LAYERS):
            values = learned(params, layer, name)
            assert_tree_close(strip_values(ax, position), np.sort(values), rtol=1e-6)
            medians = [line.get_ydata()[0] for line in ax.lines
                       if line.get_label() == MEDIAN_LABEL and abs(np.mean(line.get_xdata()) - position) < 0.3]
            assert_tree_close(np.array(medians), np.array([np.median(values)]), rtol=1e-6)
            assert_tree_close(np.array(box_at(ax, position, 0.6)), np.quantile(values, [0.25, 0.5, 0.75]), rtol=1e-6)


def test_conductance_figure_has_one_box_per_layer_and_time_step(plotted):
    figure, params = plotted.figures["conductance"], plotted.saved.params[STEPS[-1]]
    (ax,) = panels(figure)
    assert tick_labels(ax) == list(LAYERS)
    assert len(boxes(ax)) == len(LAYERS) * TIME_STEPS
    width = 0.8 / TIME_STEPS   # the time steps of layer i side by side within i ± 0.4
    for position, layer in enumerate(LAYERS):
        conductance = learned(params, layer, "cond")
        assert conductance.shape[0] == TIME_STEPS
        for t in range(TIME_STEPS):
            drawn = box_at(ax, position - 0.4 + width * (t + 0.5), width)
            assert_tree_close(np.array(drawn), np.quantile(conductance[t], [0.25, 0.5, 0.75]), rtol=1e-6)


def test_evolution_figure_follows_every_layer_from_the_initialisation_over_every_checkpoint(plotted):
    """Per parameter and layer: the median over channels at x = 0 (initialisation) and at each
    checkpoint's epoch, the interquartile range as bars; the legend names each layer's colour."""
    figure, saved = plotted.figures["evolution"], plotted.saved
    assert panel_names(figure) == list(PARAM_NAMES)
    legend = figure.legends[0]
    labels = [text.get_text() for text in legend.get_texts()]
    assert labels[:len(LAYERS)] == list(LAYERS)
    for ax, name in zip(panels(figure), PARAM_NAMES):
        assert len(ax.containers) == len(LAYERS), name
        for position, (layer, container) in enumerate(zip(LAYERS, ax.containers)):
            line, _, (bars,) = container.lines
            assert to_rgba(line.get_color()) == to_rgba(legend.legend_handles[position].get_color()), (name, layer)
            x = np.asarray(line.get_xdata())
            assert_tree_close(x - x[0], np.arange(len(STEPS) + 1.0), atol=1e-12)   # epochs 0 (initialisation), 1, 2, 3
            assert abs(x[0]) < 0.5   # dodged a little off x = 0, not shifted by a whole epoch
            # at initialisation: gates sigmoid(U[-r, r)) -> population median 0.5; primitives a constant
            start = 0.5 if name in GATE_NAMES else float(np.median(learned(saved.initial, layer, name)))
            quartiles = np.array([np.quantile(learned(saved.params[step], layer, name), [0.25, 0.5, 0.75])
                                  for step in STEPS])
            assert_tree_close(np.asarray(line.get_ydata()), np.array([start, *quartiles[:, 1]]), rtol=1e-6)
            segments = np.array(bars.get_segments())   # [x, (bottom, top), (x, y)]
            assert_tree_close(segments[1:, :, 1], quartiles[:, [0, 2]], rtol=1e-6)
            assert_tree_close(segments[:, 0, 0], x)


@pytest.fixture(scope="module")
def measured_rates(run):
    """{layer: [T, C]} firing rates computed here: the model of the run with the latest
    checkpoint's variables, on the first BATCH_SIZE evaluation examples (what glif-plot is asked
    for), in eval mode; the rates are the mean of the spikes each GLIF layer returns over the
    batch and space (captured as the layer's output, not the statistics the layer sows)."""
    _, saved = run
    model = models.ModelOptions.from_config(saved.config.model).build(10)
    images, _ = run_model.eval_batch(saved.config, BATCH_SIZE)
    variables = {"params": saved.params[STEPS[-1]], "batch_stats": saved.batch_stats}

    @jax.jit
    def spikes(variables, images):
        _, state = model.apply(variables, images, train=False, mutable=["intermediates"],
                               capture_intermediates=lambda module, method: isinstance(module, GLIF)
                               and method == "__call__")
        return state["intermediates"]

    captured = jax.device_get(spikes(variables, images))
    rates = {}
    for layer in LAYERS:
        (layer_spikes,) = captured[layer]["neuron"]["__call__"]
        layer_spikes = np.asarray(layer_spikes, np.float64)            # [T, B, H, W, C]
        assert set(np.unique(layer_spikes)) <= {0.0, 1.0} and layer_spikes.shape[1] == BATCH_SIZE
        rates[layer] = layer_spikes.mean(axis=tuple(range(1, layer_spikes.ndim - 1)))
        assert rates[layer].shape == (TIME_STEPS, learned(saved.params[STEPS[-1]], layer, "v_th").size)
        assert 0.0 < rates[layer].mean() < 1.0, layer   # neither silent nor saturated: the comparisons mean something
    return rates


def test_firing_rate_table_holds_the_rates_of_the_spikes_per_layer_time_step_and_channel(plotted, measured_rates):
    table = pd.read_csv(plotted.out / "firing_rates.csv")
    assert list(table.drop_duplicates("layer_index")["layer"]) == list(LAYERS)
    assert set(table["step"]) == {STEPS[-1]}
    assert len(table) == sum(rates.size for rates in measured_rates.values())
    for layer, rates in measured_rates.items():
        rows = table[table.layer == layer].sort_values(["time_step", "channel"])
        time_steps, channels = rates.shape
        assert_tree_close(rows["time_step"].to_numpy(np.int64), np.repeat(np.arange(time_steps), channels))
        assert_tree_close(rows["channel"].to_numpy(np.int64), np.tile(np.arange(channels), time_steps))
        assert_tree_close(rows["rate"].to_numpy(np.float64), rates.reshape(-1), atol=1e-6)


def test_firing_rate_figure_draws_the_rates_per_layer_in_network_order(plotted, measured_rates):
    figure = plotted.figures["firing_rates"]
    assert panel_names(figure) == ["rate_per_time_step", "rate_per_channel", "silent_saturated"]
    heat_ax, strip_ax, fraction_ax = panels(figure)
    assert tick_labels(fraction_ax) == list(LAYERS)
    rates = [measured_rates[layer] for layer in LAYERS]
    # heat map: rows time steps, columns layers, the mean over channels
    (image,) = heat_ax.images
    assert_tree_close(np.asarray(image.get_array()), np.stack([r.mean(axis=1) for r in rates], axis=1), atol=1e-6)
    for position, layer_rates in enumerate(rates):   # one strip point per channel: its mean over time steps
        assert_tree_close(strip_values(strip_ax, position), np.sort(layer_rates.mean(axis=0)), atol=1e-6)
    bars = sorted((patch.get_x() + patch.get_width() / 2, patch.get_height()) for patch in fraction_ax.patches
                  if isinstance(patch, Rectangle) and patch.get_width() == pytest.approx(0.4))
    silent = [100 * np.mean(np.all(r == 0.0, axis=0)) for r in rates]
    saturated = [100 * np.mean(np.all(r == 1.0, axis=0)) for r in rates]
    expected = sorted((position + offset, value) for position in range(len(rates))
                      for offset, value in ((-0.2, silent[position]), (0.2, saturated[position])))
    assert_tree_close(np.array(bars), np.array(expected), atol=1e-9)


def test_checkpoint_selection(run):
    workdir, _ = run
    assert open_run(workdir).selected.step == STEPS[-1]
    assert open_run(workdir, which="best").selected.step == BEST_STEP
    assert open_run(workdir, step=10).selected.step == 10
    named = open_run(workdir / "checkpoints" / "20")
    assert (named.selected.kind, named.selected.step) == ("best" if BEST_STEP == 20 else "latest", 20)
    assert open_run(workdir / "checkpoints" / str(BEST_STEP)).selected.kind == "best"
    assert named.config.model.name == "tiny_convnet"
    assert [ref.step for ref in named.checkpoints] == list(STEPS)
    with pytest.raises(CheckpointError, match="available steps"):
        open_run(workdir, step=11)


def test_missing_dataset_skips_only_the_firing_rate_figure(tmp_path, capsys):
    workdir = tmp_path / "run"
    make_run(workdir, steps=(5,), dataset_overrides=dict(name="npz", eval_path=str(tmp_path / "absent.npz"),
                                                        normalization="cifar10"))
    out = tmp_path / "figures"
    assert main([str(workdir), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "skipped firing_rates.png" in printed and "npz" in printed and "--data-dir" in printed
    assert not (out / "firing_rates.png").exists()
    for stem in ("gates", "primitives", "conductance", "evolution"):  # evolution: initialisation -> step 5
        assert png_size(out / f"{stem}.png")[0] > 300


def test_bad_command_lines(tmp_path, capsys):
    assert main([str(tmp_path / "nowhere"), "--out", str(tmp_path / "out")]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert main([str(tmp_path)]) == 2  # --out missing
    assert "--out" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main([str(tmp_path / "empty"), "--out", str(tmp_path / "out")]) == 1
    assert "no checkpoints" in capsys.readouterr().err


def test_end_to_end_after_a_two_step_training_run(tmp_path):
    from glif_jax.train.train import train_and_evaluate

    config = default.get_config()
    config.num_epochs, config.steps_per_epoch, config.eval_steps = 1, 2, 1
    config.batch_size, config.eval_batch_size = 16, 16
    config.checkpoint.async_save = False
    workdir = tmp_path / "run"
    train_and_evaluate(config, workdir)
    out = workdir / "figures"
    assert main([str(workdir), "--out", str(out), "--batch-size", "8"]) == 0
    for stem in FIGURES:
        assert png_size(out / f"{stem}.png")[0] > 300, stem
    table = pd.read_csv(out / "learned_values.csv")
    assert set(table["step"]) == {2}
    trained = load_checkpoint(open_run(workdir).selected).params   # the raw logits, as saved
    assert_values_table_holds_the_sigmoid_of(table, trained)
