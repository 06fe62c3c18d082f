"""Command-line flags generated from the options' declarations (`lfmsl.config.Option`, on the fields
of `Config` and `RunOptions`), so that `lfmsl run`, `lfmsl sweep` and the scripts say the same
things of each option and check it the same way, and a new option is one new field.

A field becomes `--name-with-dashes` (a switch `--no-name` where its default is True), with the
declared help, metavar, allowed values and kind, and "(default: ...)" in its help. With `lists`,
a flag takes one value or a comma list of them, each checked as a single value would be.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any, Callable, Iterable, Mapping, Sequence

from lfmsl import algorithms
from lfmsl.config import GROUPS, Config, Option, option_of

# Allowed values whose owner sits above the configuration: the algorithm registry.
_REGISTERED = {(Config, "algorithm"): algorithms.names}


def choices_of(owner: type, name: str) -> Sequence[str] | None:
    """The values field `name` of `owner` takes, from their owner; None where any value of its kind goes."""
    registered = _REGISTERED.get((owner, name))
    return tuple(registered()) if registered is not None else option_of(owner, name).choices


def flag_name(name: str, default: Any = None) -> str:
    """The flag of field `name`: `--mix-alpha`, or for a switch that is on by default `--no-mix`."""
    return f"--{'no-' if default is True else ''}{name.replace('_', '-')}"


def _default_text(option: Option, declared: Any, default: Any) -> str | None:
    """What the help says the default is: None for a switch, the declaration's words where the
    parser keeps the declared default (or sets none), else the value."""
    if isinstance(declared, bool):
        return None
    if option.default_help is not None and (default == declared or default is None):
        return option.default_help
    return ",".join(map(str, default)) if isinstance(default, (list, tuple)) else str(default)


def _help(option: Option, choices: Sequence[str] | None, default_text: str | None, note: str = "") -> str:
    text = option.help.format(choices=", ".join(choices or ())) + note
    return text if default_text is None else f"{text} (default: {default_text})"


def parse_value(owner: type, name: str) -> Callable[[str], Any]:
    """How the text of one value of field `name` becomes the value, for argparse: a bad one is
    ArgumentTypeError saying what was expected."""
    kind = option_of(owner, name).kind
    if kind is None:
        return str

    def parse(text: str) -> Any:
        try:
            return kind.parse(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    return parse


def parse_list(owner: type, name: str) -> Callable[[str], list]:
    """One value or a comma list of them, for argparse, each checked as a single value."""
    item, choices = parse_value(owner, name), choices_of(owner, name)
    kind = option_of(owner, name).kind
    expected = f"one of {', '.join(choices)}" if choices else (kind.expected if kind else "a value")

    def parse(text: str) -> list:
        try:
            items = [item(part.strip()) for part in text.split(",") if part.strip()]
        except argparse.ArgumentTypeError:
            items = None
        if not items or any(choices is not None and value not in choices for value in items):
            raise argparse.ArgumentTypeError(f"expected a comma list, each {expected}, got {text!r}")
        return items

    return parse


def add_flags(parser: argparse.ArgumentParser, owner: type = Config, names: Iterable[str] | None = None, *,
              lists: bool | Iterable[str] = False, defaults: Mapping[str, Any] | None = None,
              renamed: Mapping[str, str] | None = None, into: Any = None) -> None:
    """Add a flag for each field of `owner` (or those in `names`) to `parser`, in the help groups
    they are declared in (or all into the argument group `into`).

    lists: True (every flag takes a comma list, as the parser's description says), or the names
    whose flag takes one, which their help then says. defaults: a parser's own defaults
    (a script's), shown in the help. renamed: a flag name for a field (`seed` -> `--seeds`); the
    parsed value is under that name too.
    """
    fields = {f.name: f for f in dataclasses.fields(owner)}
    chosen = [name for name in (fields if names is None else names) if "option" in fields[name].metadata]
    defaults, renamed = dict(defaults or {}), dict(renamed or {})
    listed = set(chosen) if lists is True else set(lists or ())
    order = {title: i for i, title in enumerate(GROUPS)}
    groups: dict[str, Any] = {}
    for name in sorted(chosen, key=lambda n: order.get(option_of(owner, n).group, len(order))):
        option, declared = option_of(owner, name), fields[name].default
        if option.group not in groups:
            groups[option.group] = into or parser.add_argument_group(option.group)
        default, dest, choices = defaults.get(name, declared), renamed.get(name, name), choices_of(owner, name)
        note = "; a comma list runs each" if name in listed and lists is not True else ""
        text = _help(option, choices, _default_text(option, declared, default), note)
        how: dict[str, Any] = dict(dest=dest, default=default, help=text)
        if isinstance(declared, bool):
            how["action"] = "store_false" if default else "store_true"
        elif name in listed:
            how.update(type=parse_list(owner, name), metavar=option.metavar)
        else:
            how.update(type=parse_value(owner, name), choices=choices, metavar=option.metavar)
        groups[option.group].add_argument(flag_name(dest, default), **how)


def values_of(args: argparse.Namespace, owner: type) -> dict[str, Any]:
    """The parsed values of `owner`'s fields that `args` holds, by field name."""
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(owner) if hasattr(args, f.name)}
