"""glif_jax.errors: the option error every floor raises, and the shared checks that raise it."""

import jax.numpy as jnp
import numpy as np
import pytest

from glif_jax.errors import OptionError, check_choice, check_flag, check_integer, check_number
from glif_jax.neuron import NeuronConfig


def test_an_option_error_names_its_option_and_problem():
    error = OptionError("gates", "expected one of ('soft', 'hard'), got 'fuzzy'")
    assert isinstance(error, ValueError)
    assert str(error) == "gates: expected one of ('soft', 'hard'), got 'fuzzy'"
    assert (error.option, error.problem) == ("gates", "expected one of ('soft', 'hard'), got 'fuzzy'")


def test_within_names_the_option_inside_its_section_and_keeps_the_problem():
    error = OptionError("width_multiplier", "expected a finite number > 0, got 0.0")
    nested = error.within("kwargs").within("config.model")
    assert str(nested) == "config.model.kwargs.width_multiplier: expected a finite number > 0, got 0.0"
    assert nested.problem == error.problem and error.option == "width_multiplier"


def test_check_choice():
    assert check_choice("per", "step", ("epoch", "step")) == "step"
    for bad in ("month", None, ["step"]):
        with pytest.raises(OptionError, match=r"^per: expected one of \('epoch', 'step'\), got "):
            check_choice("per", bad, ("epoch", "step"))


def test_check_flag_takes_booleans_only():
    assert check_flag("augment", np.bool_(True)) is True and check_flag("augment", False) is False
    for bad in (1, 0, "yes", None):
        with pytest.raises(OptionError, match=f"^augment: expected True or False, got {bad!r}$"):
            check_flag("augment", bad)


def test_check_integer_takes_integers_at_or_above_the_minimum():
    assert check_integer("keep", np.int64(3), minimum=1) == 3 and type(check_integer("keep", 3, minimum=1)) is int
    assert check_integer("eval_steps", None, minimum=1, optional=True) is None
    for bad in (0, 2.0, True, "3", None):
        with pytest.raises(OptionError, match=f"^keep: expected an integer >= 1, got {bad!r}$"):
            check_integer("keep", bad, minimum=1)
    with pytest.raises(OptionError, match="expected an integer >= 1 or None, got 0"):
        check_integer("eval_steps", 0, minimum=1, optional=True)


def test_check_number_takes_real_scalars_within_the_bounds():
    assert check_number("lr", 1, minimum=0.0) == 1.0
    assert check_number("lr", np.float32(0.5), minimum=0.0) == 0.5
    assert check_number("lr", jnp.asarray(0.25), minimum=0.0) == 0.25
    assert check_number("momentum", 0.0, minimum=0.0, maximum=1.0) == 0.0
    for bad, bounds in ((-0.1, ">= 0"), (float("nan"), ">= 0"), (True, ">= 0"), ("0.1", ">= 0"),
                        (np.zeros(2), ">= 0")):
        with pytest.raises(OptionError, match=f"^lr: expected a number {bounds}, got "):
            check_number("lr", bad, minimum=0.0)
    with pytest.raises(OptionError, match="^period: expected a number > 0, got 0"):
        check_number("period", 0, minimum=0.0, inclusive=False)
    with pytest.raises(OptionError, match=r"^momentum: expected a number in \[0, 1\), got 1.0"):
        check_number("momentum", 1.0, minimum=0.0, maximum=1.0)
    with pytest.raises(OptionError, match=r"^rate: expected a number in \(0, 1\), got 0.0"):
        check_number("rate", 0.0, minimum=0.0, maximum=1.0, inclusive=False)


def test_the_neuron_config_raises_them_for_each_field():
    for field, value in (("kind", "izhikevich"), ("static_primitives", 0), ("state_dtype", "int32"),
                         ("state_dtype", "no_such_dtype"), ("unroll", -1), ("unroll", 2.0),
                         ("surrogate_width", "wide")):
        with pytest.raises(OptionError) as error:
            NeuronConfig(**{field: value})
        assert error.value.option == field and repr(value) in error.value.problem
    for unroll in (None, True, False, 0, 1, np.int64(4)):   # 0: jax.lax.scan unrolls the whole loop
        assert NeuronConfig(unroll=unroll).unroll == unroll
