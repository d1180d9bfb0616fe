"""Checkpoints of the authors' GLIF code (CAS-CLab/Gated-LIF) in glif-jax and back.

The fixtures (tests/fixtures/gated_lif, written once by make_fixtures.py with PyTorch) are
tiny networks in the authors' module structure, key names and file formats: ResNet-18 and
ResNet-19 for CIFAR (tdBN, zip and legacy ``torch.save`` formats; ResNet-18 also layer-wise,
their ``LIFSpike`` in ``ResNet_18_stand``), MS-ResNet-18 for ImageNet
(tdBN converted to SyncBatchNorm, DataParallel ``module.`` keys) and the 7B-wideNet for
CIFAR10-DVS (BatchNorm2d, float64 gates, their training script's checkpoint dict). Each
comes with what ``torch.load`` gives and the PyTorch network's eval-mode logits. Nothing
here imports PyTorch; the two checks that need it run in a subprocess and are skipped
where it is not installed.
"""

from __future__ import annotations

import collections
import importlib.util
import json
import math
import os
import pickle
import subprocess
import sys
import textwrap
import zipfile

import numpy as np
import pytest

from glif_jax.gated_lif import (GatedLIFFormatError, UnsafeCheckpointError, describe_gated_lif, from_gated_lif,
                                read_state_dict, read_torch_file, save_gated_lif, to_gated_lif)
from glif_jax.gated_lif.convert import variable_shapes
from glif_jax.gated_lif.pickle_writer import write_torch_file
from glif_jax.layers import RESIDUAL_BRANCH_SCALE, TDBN_THRESHOLD
from glif_jax.models import get_model
from tests import comparison

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "gated_lif")
RESNET18 = "resCifar18stand-CIFAR10-step2-CW.pth.tar"
LAYER_WISE = "resCifar18stand-CIFAR100-step2.pth.tar"   # their ResNet_18_stand: LIFSpike, one value per layer
RESNET19 = "resCifar19-CIFAR100-step3-CW.pth.tar"
MS_RESNET18 = "MS18-ImageNet-step2-CW.pth.tar"
WIDE7B = "SEWResNet_GLIF_dsr_ADD_T_2-checkpoint_max.pth"
CHECKPOINTS = (RESNET18, LAYER_WISE, RESNET19, MS_RESNET18, WIDE7B)
CHANNEL_WISE = (RESNET18, RESNET19, MS_RESNET18, WIDE7B)   # the kind of their published checkpoints
EXPECTED = {   # what the tensors tell about each fixture
    RESNET18: dict(architecture="resnet18", num_classes=10, time_steps=2, width_multiplier=1 / 32, channel_wise=True,
                   batch_norm="tdbn", data_parallel=False, head_keys="sequential", options={}),
    LAYER_WISE: dict(architecture="resnet18", num_classes=100, time_steps=2, width_multiplier=1 / 32,
                     channel_wise=False, batch_norm="tdbn", data_parallel=False, head_keys="container", options={}),
    RESNET19: dict(architecture="resnet19", num_classes=100, time_steps=3, width_multiplier=1 / 32, channel_wise=True,
                   batch_norm="tdbn", data_parallel=False, head_keys="container", options={}),
    MS_RESNET18: dict(architecture="ms_resnet18", num_classes=60, time_steps=2, width_multiplier=1 / 32,
                      channel_wise=True, batch_norm="sync", data_parallel=True, head_keys="sequential", options={}),
    WIDE7B: dict(architecture="wide7b", num_classes=10, time_steps=2, width_multiplier=1 / 16, channel_wise=True,
                 batch_norm="plain", data_parallel=False, head_keys="out", options={"width_change": "1x1"}),
}
HAS_TORCH = importlib.util.find_spec("torch") is not None
ENVIRONMENT = {**os.environ, "JAX_PLATFORMS": "cpu"}


def fixture(name: str) -> str:
    return os.path.join(FIXTURES, name)


def unpacked(npz, prefix: str) -> dict[str, np.ndarray]:
    """The arrays make_fixtures.packed stored under ``prefix`` (a JSON index and one flat array per dtype)."""
    offsets: dict[str, int] = {}
    arrays = {}
    for key, dtype, shape in json.loads(npz[f"{prefix}_index"].tobytes()):
        start, size = offsets.get(dtype, 0), math.prod(shape)
        arrays[key] = npz[f"{prefix}_{dtype}"][start:start + size].reshape(shape)
        offsets[dtype] = start + size
    return arrays


def reference(name: str) -> dict[str, np.ndarray]:
    with np.load(fixture(name) + ".npz") as npz:
        return {"input": npz["input"], "logits": npz["logits"], "state": unpacked(npz, "state"),
                **({"momentum": unpacked(npz, "momentum")} if "momentum_index" in npz else {})}


def channels_last(x: np.ndarray) -> np.ndarray:
    """Their ``[B, C, H, W]`` images / ``[B, T, C, H, W]`` frames → ours ``[B, H, W, C]`` / ``[B, T, H, W, C]``."""
    return x.transpose(0, 1, 3, 4, 2) if x.ndim == 5 else x.transpose(0, 2, 3, 1)


def assert_bit_identical(actual: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> None:
    """The same keys in the same order, and per key the same dtype, shape and bytes."""
    assert list(actual) == list(expected)
    comparison.assert_bit_identical(dict(actual), dict(expected))


@pytest.fixture(scope="module")
def imported():
    """``from_gated_lif`` of every fixture, once: ``{(name, exact): (model, variables)}``."""
    return {(name, exact): from_gated_lif(fixture(name), exact=exact)
            for name in CHECKPOINTS for exact in (False, True)}


def run_python(code: str) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                            env=ENVIRONMENT, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


# ---------------------------------------------------------------------------------------------
# Reading their files


def test_the_reader_needs_no_torch_and_gives_what_torch_load_gives():
    """In a process where ``import torch`` fails, every fixture reads (zip and legacy format) to
    exactly the arrays torch.load gave, the DVS checkpoint's optimizer state and numbers too."""
    run_python(f"""
        import sys
        sys.modules["torch"] = None   # any import of torch now raises ImportError
        sys.path.insert(0, {os.path.dirname(os.path.dirname(os.path.abspath(__file__)))!r})
        from tests.test_gated_lif import CHECKPOINTS, WIDE7B, assert_bit_identical, fixture, reference
        from glif_jax.gated_lif import describe_gated_lif, read_torch_file
        for name in CHECKPOINTS:
            expected = reference(name)
            checkpoint = read_torch_file(fixture(name))
            assert_bit_identical(checkpoint["net" if name == WIDE7B else "state_dict"], expected["state"])
            describe_gated_lif(fixture(name))
            if name == WIDE7B:
                dvs_checkpoint, dvs_expected = checkpoint, expected
        checkpoint, expected = dvs_checkpoint, dvs_expected
        momentum = {{str(key): value["momentum_buffer"] for key, value in checkpoint["optimizer"]["state"].items()}}
        assert_bit_identical(momentum, expected["momentum"])
        assert checkpoint["epoch"] == 199 and checkpoint["max_test_acc"] == 0.772
        assert checkpoint["lr_scheduler"]["T_max"] == 64
        assert "torch" not in [name.split(".")[0] for name, module in sys.modules.items() if module is not None]
    """)


def test_written_files_read_back_exactly(tmp_path):
    """The torch-free writer and reader agree on every dtype, 0-d, empty and non-contiguous arrays."""
    import ml_dtypes
    arrays = collections.OrderedDict(
        transposed=np.arange(12, dtype=np.float32).reshape(3, 4).T, scalar=np.array(7, dtype=np.int64),
        empty=np.zeros((0, 3), np.float32), doubles=np.linspace(-1, 1, 5), flags=np.array([True, False]),
        bytes=np.arange(4, dtype=np.uint8), halves=np.array([1.5, -2], np.float16),
        brain=np.array([0.25, 3], ml_dtypes.bfloat16), ints=np.array([-3, 2 ** 31 - 1], np.int32))
    obj = {"state_dict": arrays, "epoch": 3, "big": 2 ** 70, "lr": [0.1, 0.01], "pair": (1, "x", None, True)}
    write_torch_file(tmp_path / "written.pth.tar", obj)
    back = read_torch_file(tmp_path / "written.pth.tar")
    assert_bit_identical(back["state_dict"], arrays)
    assert {key: back[key] for key in ("epoch", "big", "lr", "pair")} == {
        "epoch": 3, "big": 2 ** 70, "lr": [0.1, 0.01], "pair": (1, "x", None, True)}


@pytest.mark.parametrize("name", CHECKPOINTS)
def test_what_the_tensors_tell(name):
    """Architecture, classes, T, width multiplier, BN kind, DataParallel, head keys and the
    7B-wideNet's 1×1 width change are read from the tensors."""
    facts = describe_gated_lif(fixture(name))
    assert {field: getattr(facts, field) for field in EXPECTED[name]} == EXPECTED[name]


# ---------------------------------------------------------------------------------------------
# Their network and ours compute the same function


@pytest.mark.parametrize("name", CHECKPOINTS)
def test_logits_equal_those_of_their_network(imported, name):
    """Eval-mode logits of the imported model equal the PyTorch network's within float32 rounding."""
    model, variables = imported[(name, False)]
    expected = reference(name)
    logits = np.asarray(model.apply(variables, channels_last(expected["input"]), train=False))
    scale = np.abs(expected["logits"]).max()
    np.testing.assert_allclose(logits, expected["logits"], rtol=1e-5, atol=1e-5 * scale)


def test_the_imported_variables_are_float32_numpy_arrays_of_the_model(imported):
    import jax
    model, variables = imported[(WIDE7B, False)]
    leaves = jax.tree_util.tree_leaves(variables)
    assert all(isinstance(leaf, np.ndarray) and leaf.dtype == np.float32 for leaf in leaves)
    assert model.spec.stem.kernel == 1 and model.time_steps == 2 and model.num_classes == 10
    _, exact = imported[(WIDE7B, True)]
    assert exact["params"]["stem"]["neuron"]["alpha"].dtype == np.float64   # their DVS gates


# ---------------------------------------------------------------------------------------------
# Back to their format


@pytest.mark.parametrize("name", CHECKPOINTS)
def test_round_trip_is_bit_exact(imported, name):
    """from_gated_lif(exact=True) then to_gated_lif(like=the file) gives back every key, in order,
    with its dtype, shape and bytes (float64 gates and SyncBatchNorm weights included)."""
    model, variables = imported[(name, True)]
    assert_bit_identical(to_gated_lif(model, variables, like=fixture(name)), read_state_dict(fixture(name)))


@pytest.mark.parametrize("name", (RESNET18, LAYER_WISE, RESNET19))
def test_float32_round_trip_is_bit_exact_for_tdbn_checkpoints(imported, name):
    """Their CIFAR checkpoints are all float32 tdBN: the default float32 import loses nothing."""
    model, variables = imported[(name, False)]
    assert_bit_identical(to_gated_lif(model, variables, like=fixture(name)), read_state_dict(fixture(name)))


@pytest.mark.parametrize("name", (MS_RESNET18, WIDE7B))
def test_float32_round_trip_rounds_only_what_float32_cannot_hold(imported, name):
    model, variables = imported[(name, False)]
    original = read_state_dict(fixture(name))
    back = to_gated_lif(model, variables, like=fixture(name))
    for key, value in original.items():
        np.testing.assert_allclose(back[key], value, rtol=2 ** -23, atol=0, err_msg=key)


@pytest.mark.parametrize("name", CHANNEL_WISE)
def test_default_export_has_the_keys_of_their_published_checkpoints(imported, name):
    """Without ``like``, the name alone gives their published format: keys, order, dtypes
    (``module.`` and SyncBatchNorm for MS-ResNet-18, float64 gates for the 7B-wideNet)."""
    model, variables = imported[(name, False)]
    original = read_state_dict(fixture(name))
    exported = to_gated_lif(model.spec.name, variables)
    assert list(exported) == list(original)
    assert all(exported[key].dtype == value.dtype and exported[key].shape == value.shape
               for key, value in original.items())


def test_exported_sync_batch_norm_and_data_parallel_keep_the_function(imported):
    """ResNet-18 exported as their ImageNet recipe stores it (SyncBatchNorm weights = scale·k·V,
    ``module.`` keys) and imported again computes the same logits."""
    model, variables = imported[(RESNET18, False)]
    exported = to_gated_lif(model, variables, batch_norm="sync", data_parallel=True)
    assert all(key.startswith("module.") for key in exported)
    assert "module.conv1.0.module.1.Vth" not in exported and "module.conv1.1.Vth" in exported
    scale = variables["params"]["stage1_block2"]["shortcut"]["norm"]["scale"]
    factor = RESIDUAL_BRANCH_SCALE * TDBN_THRESHOLD
    np.testing.assert_array_equal(exported["module.features.1.downsample.module.weight"],
                                  (scale.astype(np.float64) * factor).astype(np.float32))
    again, again_variables = from_gated_lif(exported)
    assert describe_gated_lif(exported).batch_norm == "sync"
    x = channels_last(reference(RESNET18)["input"])
    np.testing.assert_allclose(again.apply(again_variables, x, train=False), model.apply(variables, x, train=False),
                               rtol=1e-5, atol=1e-6)


def test_layer_wise_glif_round_trips():
    """Layer-wise GLIF (their LIFSpike: scalar logits, conduct [T]) exports and imports back exactly."""
    import jax
    model = get_model("resnet19", num_classes=10, time_steps=2, channel_wise=False, width_multiplier=1 / 32)
    generator = np.random.default_rng(1)
    variables = jax.tree_util.tree_map(lambda leaf: generator.normal(size=leaf.shape).astype(np.float32),
                                       variable_shapes(model))
    exported = to_gated_lif("resnet19", variables)
    assert exported["conv1.1.alpha"].shape == () and exported["conv1.1.conduct"].shape == (2,)
    again, again_variables = from_gated_lif(exported)
    assert not again.channel_wise and again.time_steps == 2
    assert_bit_identical(to_gated_lif(again, again_variables), exported)


@pytest.mark.torch
@pytest.mark.skipif(not HAS_TORCH, reason="needs PyTorch (the bench extra) to load the file into their network")
def test_saved_files_load_into_their_networks(imported, tmp_path):
    """``save_gated_lif`` files pass ``torch.load(weights_only=True)`` and their networks'
    ``load_state_dict(strict=True)``, and give the reference logits."""
    files = {}
    for name in CHECKPOINTS:
        model, variables = imported[(name, False)]
        files[name] = str(tmp_path / name)
        # without like=, a ResNet-18 is written as their channel-wise ResNet_18_stand_CW names its head
        like = {"like": fixture(name)} if name == LAYER_WISE else {}
        save_gated_lif(files[name], to_gated_lif(model, variables, **like),
                       key="net" if name == WIDE7B else "state_dict", extra={"epoch": 1})
    run_python(f"""
        import sys
        import numpy as np
        sys.path.insert(0, {FIXTURES!r})
        from make_fixtures import logits_of_exported
        for name, file in {files!r}.items():
            expected = np.load({FIXTURES!r} + "/" + name + ".npz")["logits"]
            got = logits_of_exported(name, file)
            np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max(), err_msg=name)
    """)


# ---------------------------------------------------------------------------------------------
# What does not fit is refused, naming it


def test_wrong_architecture_is_refused_naming_what_the_checkpoint_is():
    with pytest.raises(GatedLIFFormatError, match=r"wrong architecture.*ResNet_19_cifar_CW.*'resnet19'.*'resnet18'"):
        from_gated_lif(fixture(RESNET19), model="resnet18")
    with pytest.raises(GatedLIFFormatError, match=r"wrong architecture.*'ms_resnet18'.*'wide7b'"):
        from_gated_lif(fixture(MS_RESNET18), model="wide7b")
    for convert in (lambda: from_gated_lif(fixture(RESNET18), model="cifarnet"),
                    lambda: to_gated_lif("cifarnet", {"params": {}, "batch_stats": {}})):
        with pytest.raises(GatedLIFFormatError, match="model 'cifarnet': .*resnet18, resnet19, ms_resnet18, wide7b only"):
            convert()
    with pytest.raises(GatedLIFFormatError, match="not a checkpoint of the authors'.*first keys: fc.weight"):
        from_gated_lif({"fc.weight": np.zeros((2, 3), np.float32)})


def test_missing_key_is_refused_naming_it():
    state = read_state_dict(fixture(RESNET18))
    del state["features.3.body.1.tau"]
    with pytest.raises(GatedLIFFormatError, match=r"missing keys: features\.3\.body\.1\.tau"):
        from_gated_lif(state)
    state = read_state_dict(fixture(MS_RESNET18))
    del state["module.features.0.body.0.conduct"]
    with pytest.raises(GatedLIFFormatError, match=r"missing keys: module\.features\.0\.body\.0\.conduct"):
        from_gated_lif(state, model="ms_resnet18")


def test_extra_key_is_refused_naming_it():
    state = read_state_dict(fixture(WIDE7B))
    state["conv.5.weight"] = np.zeros(3, np.float32)
    with pytest.raises(GatedLIFFormatError, match=r"unexpected keys: conv\.5\.weight"):
        from_gated_lif(state)


def test_shape_mismatch_is_refused_naming_the_key_and_both_shapes():
    state = read_state_dict(fixture(RESNET18))
    state["features.3.body.2.module.0.weight"] = np.zeros((4, 4, 1, 1), np.float32)
    with pytest.raises(GatedLIFFormatError, match=r"features\.3\.body\.2\.module\.0\.weight: "
                                                  r"checkpoint \(4, 4, 1, 1\), expected \(4, 4, 3, 3\)"):
        from_gated_lif(state, model="resnet18")
    state = read_state_dict(fixture(RESNET19))
    state["features.0.lif.conduct"] = np.zeros((4, 4), np.float32)   # T=4 in one layer, T=3 elsewhere
    with pytest.raises(GatedLIFFormatError, match=r"features\.0\.lif\.conduct: checkpoint \(4, 4\), expected \(3, 4\)"):
        from_gated_lif(state)


def test_time_steps_and_thresholds_that_do_not_fit_are_refused():
    with pytest.raises(GatedLIFFormatError, match=r"time_steps=4.*T=2 \(conv1\.1\.conduct has shape \(2, 2\)\)"):
        from_gated_lif(fixture(RESNET18), time_steps=4)
    state = read_state_dict(fixture(RESNET18))
    state["features.0.downsample.module.Vth"] = np.array(0.75, np.float32)
    with pytest.raises(GatedLIFFormatError, match=r"features\.0\.downsample\.module\.Vth is 0\.75"):
        from_gated_lif(state)


def test_a_file_name_stating_another_t_warns(tmp_path):
    """Their file names state T (``-step4-``); the tensors decide, a disagreeing name warns."""
    renamed = tmp_path / "resCifar18stand-CIFAR10-step6-CW.pth.tar"
    renamed.write_bytes(open(fixture(RESNET18), "rb").read())
    with pytest.warns(UserWarning, match="file name says T=6.*conduct for T=2"):
        model, _ = from_gated_lif(renamed)
    assert model.time_steps == 2


def test_exports_that_do_not_fit_are_refused(imported):
    model, variables = imported[(RESNET18, False)]
    with pytest.raises(GatedLIFFormatError, match="wrong architecture.*'resnet19'.*not their network for 'resnet18'"):
        to_gated_lif(model, variables, like=fixture(RESNET19))
    with pytest.raises(GatedLIFFormatError, match="batch_norm='sync' contradicts like=.*'tdbn'"):
        to_gated_lif(model, variables, like=fixture(RESNET18), batch_norm="sync")
    broken = {"params": {**variables["params"], "head2": {"kernel": np.zeros((16, 3), np.float32)}},
              "batch_stats": variables["batch_stats"]}
    with pytest.raises(GatedLIFFormatError, match=r"\['params'\]\['head2'\]\['kernel'\]: variables \(16, 3\), "
                                                  r"the model \(8, 10\)"):
        to_gated_lif(model, broken)


def evil_pickle(marker: str) -> bytes:
    """A pickle that, unpickled by ``pickle.load``, would run ``os.system('touch <marker>')``."""
    class Exploit:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)
    return pickle.dumps({"state_dict": Exploit()}, protocol=2)


def test_a_forbidden_global_is_refused_without_running_it(tmp_path):
    """Legacy and zip files whose pickle names os.system are refused, naming it; nothing runs."""
    marker = tmp_path / "ran"
    legacy = tmp_path / "legacy.pth"
    legacy.write_bytes(evil_pickle(str(marker)))
    archive = tmp_path / "zipped.pth.tar"
    with zipfile.ZipFile(archive, "w") as file:
        file.writestr("zipped/data.pkl", evil_pickle(str(marker)))
        file.writestr("zipped/version", "3\n")
    for path in (legacy, archive):
        with pytest.raises(UnsafeCheckpointError, match=r"refusing to load the global (os|posix)\.system"):
            from_gated_lif(path)
        with pytest.raises(UnsafeCheckpointError):
            read_torch_file(path)
    assert not marker.exists()
    eval_call = pickle.PROTO + b"\x02" + pickle.GLOBAL + b"builtins\neval\n" + pickle.BINUNICODE + \
        (10).to_bytes(4, "little") + b"1/0 + oops" + pickle.TUPLE1 + pickle.REDUCE + pickle.STOP
    legacy.write_bytes(eval_call)
    with pytest.raises(UnsafeCheckpointError, match=r"builtins\.eval"):
        read_torch_file(legacy)


def test_a_git_lfs_pointer_is_named_as_such(tmp_path):
    pointer = tmp_path / "resCifar18stand-CIFAR10-step4-CW.pth.tar"
    pointer.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:0123\nsize 44000000\n")
    with pytest.raises(GatedLIFFormatError, match="Git LFS pointer"):
        from_gated_lif(pointer)


def test_the_pickle_cannot_change_the_objects_it_is_given(tmp_path):
    """A BUILD opcode on an allowed object (here PyTorch's FloatStorage token) is refused and changes nothing."""
    from glif_jax.gated_lif.pickle_reader import ALLOWED_GLOBALS
    text = lambda value: pickle.BINUNICODE + len(value).to_bytes(4, "little") + value   # noqa: E731
    build = (pickle.PROTO + b"\x02" + pickle.GLOBAL + b"torch\nFloatStorage\n" + pickle.NONE + pickle.EMPTY_DICT
             + pickle.MARK + text(b"dtype") + text(b"O") + pickle.SETITEMS + pickle.TUPLE2 + pickle.BUILD + pickle.STOP)
    path = tmp_path / "build.pth"
    path.write_bytes(build)
    with pytest.raises(GatedLIFFormatError, match="read-only"):
        read_torch_file(path)
    assert ALLOWED_GLOBALS[("torch", "FloatStorage")].dtype == np.float32


def test_a_tensor_reaching_past_its_storage_is_refused(tmp_path):
    """Size, stride and offset are checked against the storage before any element is read."""
    path = tmp_path / "overrun.pth.tar"
    write_torch_file(path, {"state_dict": {"w": np.zeros(4, np.float32)}})
    with zipfile.ZipFile(path) as file:
        records = {name: file.read(name) for name in file.namelist()}
    records["archive/data.pkl"] = records["archive/data.pkl"].replace(b"(K\x04t", b"(K\x40t")   # size (4,) → (64,)
    with zipfile.ZipFile(path, "w") as file:
        for name, data in records.items():
            file.writestr(name, data)
    with pytest.raises(GatedLIFFormatError, match=r"tensor of size \(64,\).*storage of 4"):
        read_torch_file(path)
