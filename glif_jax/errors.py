"""The error every floor raises for a bad value of a named option, and the checks that raise it.

Each check names the option, says what was expected and shows what came, in one format:
``"<option>: expected <what>, got <value>"``. Using these keeps that format, and each kind of
rule, in one place.
"""

from __future__ import annotations

import numbers
from typing import Any, Collection

import numpy as np


class OptionError(ValueError):
    """A bad value of one named option: a field, an argument or a dotted config path.

    ``option`` names it and ``problem`` says what was expected and what came; the message is
    ``"<option>: <problem>"``. A caller that knows where the option came from names the full
    path with :meth:`within`, e.g. ``error.within("config.model.neuron")``.
    """

    def __init__(self, option: str, problem: str):
        super().__init__(f"{option}: {problem}")
        self.option = option
        self.problem = problem

    def within(self, section: str) -> OptionError:
        """The same error, its option named inside ``section`` (``section.option``)."""
        return OptionError(f"{section}.{self.option}", self.problem)


def check_known(keys: Collection[str], known: Collection[str], what: str) -> None:
    """Every one of ``keys`` is one of ``known``, the options of ``what`` (e.g. "the optimiser")."""
    for key in keys:
        if key not in known:
            raise OptionError(key, f"not an option of {what}; its options: {', '.join(known)}")


def check_choice(option: str, value: Any, choices: Collection[str]) -> str:
    """``value`` when it is one of ``choices``."""
    if not isinstance(value, str) or value not in choices:
        raise OptionError(option, f"expected one of {tuple(choices)}, got {value!r}")
    return value


def check_flag(option: str, value: Any) -> bool:
    """``value`` when it is True or False."""
    if not isinstance(value, (bool, np.bool_)):
        raise OptionError(option, f"expected True or False, got {value!r}")
    return bool(value)


def check_integer(option: str, value: Any, *, minimum: int, optional: bool = False) -> int | None:
    """``value`` as an int when it is an integer >= ``minimum`` (or None when ``optional``)."""
    if value is None and optional:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral) or value < minimum:
        raise OptionError(option, f"expected an integer >= {minimum}{' or None' if optional else ''}, got {value!r}")
    return int(value)


def check_number(option: str, value: Any, *, minimum: float, maximum: float | None = None,
                 inclusive: bool = True) -> float:
    """``value`` as a float when it is a real number >= ``minimum`` (> when not ``inclusive``)
    and < ``maximum``; NumPy and JAX scalars count."""
    real = (not isinstance(value, (bool, np.bool_))
            and (isinstance(value, numbers.Real)
                 or (np.ndim(value) == 0 and hasattr(value, "dtype")
                     and np.issubdtype(value.dtype, np.number) and not np.issubdtype(value.dtype, np.complexfloating))))
    if real:
        number = float(value)
        real = (number >= minimum if inclusive else number > minimum) and (maximum is None or number < maximum)
    if not real:
        bounds = (f"{'>=' if inclusive else '>'} {minimum:g}" if maximum is None
                  else f"in {'[' if inclusive else '('}{minimum:g}, {maximum:g})")
        raise OptionError(option, f"expected a number {bounds}, got {value!r}")
    return number
