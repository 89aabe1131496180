"""Range checks of datamodule arguments, made when a datamodule is built: a value out of range is a
``ConfigValueError`` naming the key as a config spells it (``data.init_args.batch_size``), the value and what
would do, instead of a traceback from numpy or a DataLoader once the run has started."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import ConfigValueError


def config_key(name: str) -> str:
    """The key of datamodule argument ``name`` as a config spells it."""
    return f"data.init_args.{name}"


def is_integer(value) -> bool:
    """An int (Python or numpy), not a bool (``True`` is an int to Python, never a count to a user)."""
    return isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)


def is_number(value) -> bool:
    """An int or a float (Python or numpy), not a bool."""
    numeric = isinstance(value, int | float | np.integer | np.floating)
    return numeric and not isinstance(value, bool | np.bool_)


def check_integer(name: str, value, minimum: int, meaning: str, optional: bool = False) -> None:
    """``value`` is an integer of at least ``minimum`` (or None when ``optional``); ``meaning`` says what the
    setting is, with an example."""
    if value is None and optional:
        return
    expected = f"an integer >= {minimum}{' or unset' if optional else ''} ({meaning})"
    if not is_integer(value):
        raise ConfigValueError(f"{config_key(name)}: {value!r} is not an integer: expected {expected}")
    if value < minimum:
        raise ConfigValueError(f"{config_key(name)}: {value} is out of range: expected {expected}")


def check_share(name: str, value, meaning: str) -> None:
    """``value`` is a share in [0, 1) of a dataset's images."""
    if is_number(value) and 0.0 <= float(value) < 1.0:
        return
    raise ConfigValueError(
        f"{config_key(name)}: {value!r} is out of range: expected a number in [0, 1) ({meaning})"
    )


def check_flag(name: str, value, optional: bool = False) -> None:
    """``value`` is true or false (or None when ``optional``): any other value would read as a truth value
    no one chose."""
    if isinstance(value, bool | np.bool_) or (value is None and optional):
        return
    unset = " or unset" if optional else ""
    raise ConfigValueError(
        f"{config_key(name)}: {value!r} is not true or false: expected true or false{unset}"
    )


def check_choice(name: str, value, choices: Sequence, optional: bool = False, what: str = "value") -> None:
    """``value`` is one of ``choices`` (or None when ``optional``); ``what`` the choices are, for the
    message."""
    if value in choices or (value is None and optional):
        return
    unset = " (or leave it unset for the dataset's default)" if optional else ""
    raise ConfigValueError(
        f"{config_key(name)}: unknown {what} {value!r}: choose one of {list(choices)}{unset}"
    )


def check_class_names(class_names: Sequence[str] | None) -> None:
    """``class_names`` (when given) lists at least two distinct, non-empty names."""
    if class_names is None:
        return
    key = config_key("class_names")
    names_ok = not isinstance(class_names, str) and all(
        isinstance(name, str) and name.strip() for name in class_names
    )
    if not names_ok:
        raise ConfigValueError(f"{key}: {class_names!r} is not a list of class names: expected a list of "
                               "non-empty names, e.g. [normal, pneumonia]")
    if len(class_names) < 2:
        raise ConfigValueError(f"{key}: {list(class_names)} lists {len(class_names)} class: a classification "
                               "dataset needs at least two")
    repeated = sorted({name for name in class_names if list(class_names).count(name) > 1})
    if repeated:
        raise ConfigValueError(f"{key}: {list(class_names)} lists {repeated[0]!r} more than once: list each "
                               "class once")
