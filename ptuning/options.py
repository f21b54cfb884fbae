"""Options are declared once, on the fields of a dataclass; the app's widgets and the command line read them there.

The convention (``PromptConfig``, ``TrainingArguments``, and any other settings dataclass, e.g. a ``ServingConfig``
for a ``serve`` command): each field has a default and ``metadata`` with
- ``"help"``: what the setting means, written for users (the CLI's ``--help`` and the app's widget info);
- ``"flag"`` (optional): the command-line option, e.g. ``"--prompt-length"``; default: ``--`` and the field's name
  with dashes (``batch_size`` -> ``--batch-size``);
- ``"metavar"`` (optional): the value's name in ``--help``; default ``N`` for int, ``X`` for float, ``TEXT`` for str;
- ``"cli_help"`` (optional): the option's help when it must read otherwise than ``help``, e.g. for a switch that
  turns a default-True field off (``train_head`` -> ``--freeze-head``).
The field's type says how the value is read: ``int``, ``float`` or ``str`` (each may be ``| None``); a ``str``
``Enum``, whose values are the choices (any case when they are all upper case); ``bool``, a switch that sets the
opposite of the default. ``--help`` adds "Default: ..." for a default that is not None, empty or a bool. Which fields
a command offers is the command's choice (``only`` / ``exclude``), not the field's.

An option left out of the command line is absent from the result, so the dataclass's own default applies::

    add_options(parser.add_argument_group("training"), TrainingArguments, exclude=("checkpoint_dir",))
    args = TrainingArguments(**given_options(parser.parse_args(), TrainingArguments))
"""

from __future__ import annotations

import argparse
import dataclasses
import enum
import types
import typing
from collections.abc import Collection

_METAVARS = {int: "N", float: "X", str: "TEXT"}


def field_help(cls: type, name: str) -> str:
    """The help text of field ``name`` of dataclass ``cls`` (for the app's widgets, say)."""
    return _field(cls, name).metadata.get("help", "")


def option_flag(cls: type, name: str) -> str:
    """The command-line option of field ``name`` of ``cls``: ``--prompt-length`` for ``num_virtual_tokens``."""
    return _flag(_field(cls, name))


def add_options(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    cls: type,
    *,
    only: Collection[str] | None = None,
    exclude: Collection[str] = (),
) -> None:
    """Add an option to ``parser`` (a parser, group or mutually exclusive group) for each field of ``cls``, in field
    order: all of them, or those in ``only``, less those in ``exclude``."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in exclude or (only is not None and f.name not in only):
            continue
        how = _how_to_read(f, hints[f.name])
        parser.add_argument(_flag(f), dest=_dest(cls, f.name), default=argparse.SUPPRESS, help=_help(f), **how)


def given_options(namespace: argparse.Namespace, cls: type) -> dict:
    """``{field: value}`` for the options of ``cls`` given on the command line (``add_options`` added them)."""
    prefix = _dest(cls, "")
    return {key[len(prefix) :]: value for key, value in vars(namespace).items() if key.startswith(prefix)}


def _field(cls: type, name: str) -> dataclasses.Field:
    return next(f for f in dataclasses.fields(cls) if f.name == name)


def _flag(f: dataclasses.Field) -> str:
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def _dest(cls: type, name: str) -> str:
    # Namespaced by the class: two dataclasses on one command may share field names (and the command its own options)
    return f"{cls.__name__}.{name}"


def _help(f: dataclasses.Field) -> str:
    text = f.metadata.get("cli_help") or f.metadata.get("help", "")
    default = f.default
    if default is not dataclasses.MISSING and default is not None and default != "" and not isinstance(default, bool):
        text += f" Default: {default.value if isinstance(default, enum.Enum) else default}."
    return text.replace("%", "%%")  # argparse formats help strings with %


def _how_to_read(f: dataclasses.Field, hint) -> dict:
    """``add_argument``'s keywords for a field of type ``hint``."""
    kind = _without_none(hint)
    if kind is bool:
        return {"action": "store_const", "const": not f.default}
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        choices = [m.value for m in kind]
        return {"choices": choices, **({"type": str.upper} if all(c.isupper() for c in choices) else {})}
    if kind not in _METAVARS:
        raise TypeError(f"{f.name}: options of type {hint} are not supported (int, float, str, a str Enum or bool)")
    return {"type": kind, "metavar": f.metadata.get("metavar", _METAVARS[kind])}


def _without_none(hint):
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return hint
