"""Dataclass configs filled in from the command line and saved beside every run.

A config is a plain ``@dataclass``; each field's ``metadata={"help": ...}`` becomes its
``--help`` text, ``metadata={"choices": [...]}`` restricts its values and
``metadata={"aliases": ["--out"]}`` adds other names for its flag (``"metavar"`` names a list
field's values in ``--help``). A field declares the values
it accepts in its metadata too, and :func:`validate_config` checks them all (every command
calls it before it creates anything, see :mod:`core_ssl.pipeline`):

- ``"min"`` / ``"max"``: inclusive bounds (``{"min": 1}`` for a count);
- ``"gt"`` / ``"lt"``: exclusive bounds (``{"gt": 0}`` for a learning rate);
- ``"choices"``: the allowed values;
- ``"nonempty": True``: a string or path that must not be empty (a run folder).

A field that may be None (``int | None``) accepts None whatever its bounds. A list field
(``list[int]``, ``list[str] | None``) takes one or more values after its flag (``--seeds 0 1 2``;
``metadata={"nargs": "*"}`` lets it take none), and its rules apply to every value;
``metadata={"positional": True}`` makes a field an argument without a flag (``report RUN [RUN ...]``
for a list). Presets are named
dicts of overrides applied before the command-line flags, so ``--preset cpu --batch-size 64``
means "the cpu preset, but batch 64"::

    @dataclass
    class TrainConfig:
        lr: float = field(default=1e-3, metadata={"help": "learning rate"})
        augment: bool = field(default=True, metadata={"help": "use augmentation"})

    cfg = parse_config(TrainConfig, presets={"cpu": {"lr": 3e-4}})
    save_config(cfg, run_dir)            # run_dir / "config.json"
    cfg = load_config(TrainConfig, run_dir / "config.json")
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import types
import typing
from pathlib import Path
from typing import Any, Sequence, TypeVar

from core_ssl.checkpoint import atomic_write
from core_ssl.cli import UsageError

T = TypeVar("T")
CONFIG_FILE = "config.json"


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _scalar_type(annotation: Any) -> tuple[type, bool]:
    """(the field's scalar type, whether None is allowed) for int/float/str/bool/Path, optional or
    not; for a list field (:func:`_is_list`), the type of its values."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return _scalar_type(args[0])[0], True
    if origin is list and len(typing.get_args(annotation)) == 1:
        kind, optional = _scalar_type(typing.get_args(annotation)[0])
        if kind is bool or optional:
            raise TypeError(f"the values of a list field must be int, float, str or Path, got {annotation}")
        return kind, False
    if origin is typing.Literal:
        return type(typing.get_args(annotation)[0]), False
    if annotation in (int, float, str, bool, Path):
        return annotation, False
    raise TypeError(f"config fields must be int, float, str, bool or Path (optionally | None), got {annotation}")


def _is_list(annotation: Any) -> bool:
    """Whether a field's type is ``list[X]`` or ``list[X] | None``."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return any(_is_list(a) for a in typing.get_args(annotation) if a is not type(None))
    return typing.get_origin(annotation) is list


def _parse_optional(kind: type):
    def parse(text: str):
        if kind is Path and not text.strip():  # "" is no path, not "the default": say none for that
            raise argparse.ArgumentTypeError("an empty path; give a file or folder name (or none for the default)")
        return None if text.lower() in ("none", "null", "") else kind(text)
    parse.__name__ = kind.__name__
    return parse


def _parse_path(text: str) -> Path:
    if not text.strip():  # Path("") would be the current folder
        raise argparse.ArgumentTypeError("an empty path; give a file or folder name")
    return Path(text)


BOUND_KEYS = ("min", "max", "gt", "lt")
"""The metadata keys of a field's numeric bounds (inclusive ``min`` / ``max``, exclusive ``gt`` / ``lt``)."""


def field_rules(cls: type) -> dict[str, dict[str, Any]]:
    """Each field's declared rules: ``{name: {"min": 1, ...}}`` (bounds, ``choices``,
    ``nonempty``; a ``Literal`` type gives its choices); fields without rules are left out."""
    hints = typing.get_type_hints(cls)
    rules = {}
    for f in dataclasses.fields(cls):
        rule = {key: f.metadata[key] for key in (*BOUND_KEYS, "choices", "nonempty") if key in f.metadata}
        if typing.get_origin(hints[f.name]) is typing.Literal:
            rule["choices"] = list(typing.get_args(hints[f.name]))
        if rule:
            rules[f.name] = rule
    return rules


def describe_bounds(rule: dict[str, Any]) -> str:
    """``>= 1``, ``> 0``, ``in [0, 1)``... for a field's bounds."""
    low = (f"[{rule['min']}" if "min" in rule else f"({rule['gt']}" if "gt" in rule else None)
    high = (f"{rule['max']}]" if "max" in rule else f"{rule['lt']})" if "lt" in rule else None)
    if low and high:
        return f"in {low}, {high}"
    if low:
        return (">= " if low[0] == "[" else "> ") + low[1:]
    return ("<= " if high[-1] == "]" else "< ") + high[:-1]


def _violates(value: Any, rule: dict[str, Any]) -> bool:
    if "min" in rule and not value >= rule["min"]:  # written so that NaN violates every bound
        return True
    if "max" in rule and not value <= rule["max"]:
        return True
    if "gt" in rule and not value > rule["gt"]:
        return True
    return "lt" in rule and not value < rule["lt"]


def validate_config(cfg: Any) -> None:
    """Check every field of ``cfg`` against its declared rules (:func:`field_rules`).

    Raises:
        UsageError: for the first field out of its rules (exit 2), naming the flag, the value
            and what to give instead.
    """
    for name, rule in field_rules(type(cfg)).items():
        value = getattr(cfg, name)
        for item in value if isinstance(value, (list, tuple)) else [value]:  # a list field: every value
            _check_value(_flag(name), item, rule)


def _check_value(flag: str, value: Any, rule: dict[str, Any]) -> None:
    """Raise the :class:`UsageError` of :func:`validate_config` when ``value`` breaks ``rule``."""
    if value is None or isinstance(value, bool):
        return
    if rule.get("nonempty") and not str(value).strip():  # an empty --path flag is refused by the parser
        raise UsageError(f"{flag} must not be empty", "give a folder (or file) name")
    if "choices" in rule and value not in rule["choices"]:
        raise UsageError(f"{flag} must be one of {', '.join(map(str, rule['choices']))}, got {value!r}",
                         "give one of those")
    if any(key in rule for key in BOUND_KEYS) and _violates(value, rule):
        bounds = describe_bounds(rule)
        fix = f"give {rule['min']} or more" if set(rule) & set(BOUND_KEYS) == {"min"} else f"give a value {bounds}"
        raise UsageError(f"{flag} must be {bounds}, got {value}", fix)


def out_of_bounds_values(rule: dict[str, Any], kind: type) -> list[Any]:
    """Values just outside a field's bounds (for tests generated from the declarations)."""
    step = 1 if kind is int else 0.5
    values = []
    if "min" in rule:
        values.append(rule["min"] - step)
    if "gt" in rule:
        values.append(rule["gt"])
    if "max" in rule:
        values.append(rule["max"] + step)
    if "lt" in rule:
        values.append(rule["lt"])
    return values


class _Parser(argparse.ArgumentParser):
    """argparse's parser, except that writing ``--help`` into a closed pipe is not ignored: the
    ``BrokenPipeError`` reaches :func:`core_ssl.cli.run_command`, which exits 141 as documented."""

    def _print_message(self, message: str, file: Any = None) -> None:
        if message:
            (file or sys.stderr).write(message)


def build_parser(cls: type, description: str | None = None, presets: dict[str, dict[str, Any]] | None = None,
                 prog: str | None = None) -> argparse.ArgumentParser:
    """An ``argparse`` parser with one flag per field of the dataclass ``cls`` (``prog``: the
    command's name in ``--help``, default the program's)."""
    parser = _Parser(
        prog=prog,
        description=description or (cls.__doc__ or "").strip().split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    if presets:
        parser.add_argument("--preset", choices=sorted(presets), default=None,
                            help="named settings applied before the flags below")
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        kind, optional = _scalar_type(hints[f.name])
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        help_text = f.metadata.get("help", "")
        choices = f.metadata.get("choices")
        if typing.get_origin(hints[f.name]) is typing.Literal:
            choices = list(typing.get_args(hints[f.name]))
        flags = [_flag(f.name), *f.metadata.get("aliases", ())]  # e.g. --out for --run-dir
        if f.metadata.get("positional"):  # e.g. the run folders a report reads: `report RUN [RUN ...]`
            parser.add_argument(f.name, type=_parse_path if kind is Path else kind,
                                nargs=f.metadata.get("nargs", "+" if _is_list(hints[f.name]) else None),
                                default=argparse.SUPPRESS, metavar=f.metadata.get("metavar", f.name.upper()),
                                help=help_text)
        elif kind is bool:
            parser.add_argument(*flags, dest=f.name, action=argparse.BooleanOptionalAction,
                                default=argparse.SUPPRESS, help=f"{help_text} (default: {default})")
        elif _is_list(hints[f.name]):
            parser.add_argument(*flags, dest=f.name, type=_parse_path if kind is Path else kind,
                                nargs=f.metadata.get("nargs", "+"), choices=choices, default=argparse.SUPPRESS,
                                metavar=f.metadata.get("metavar"), help=f"{help_text} (default: {default})")
        else:
            parse = _parse_optional(kind) if optional else _parse_path if kind is Path else kind
            parser.add_argument(*flags, dest=f.name, type=parse,
                                choices=choices, default=argparse.SUPPRESS,
                                help=f"{help_text} (default: {default})")
    return parser


def parse_config(
    cls: type[T],
    argv: Sequence[str] | None = None,
    description: str | None = None,
    presets: dict[str, dict[str, Any]] | None = None,
    prog: str | None = None,
) -> T:
    """Fill the dataclass ``cls`` from defaults, then the chosen preset, then the flags, and
    check every field against its declared rules (:func:`validate_config`; a
    :class:`~core_ssl.cli.UsageError` for the first one out of bounds). The training commands
    go through :class:`core_ssl.pipeline.ConfigPipeline`, which adds resume and resolution."""
    parser = build_parser(cls, description, presets, prog)
    args = vars(parser.parse_args(argv))
    values: dict[str, Any] = {}
    preset = args.pop("preset", None) if presets else None  # without presets, "preset" may be a field of cls
    if preset:
        values.update(presets[preset])
    values.update(args)
    cfg = replace_config(cls(), **values)
    validate_config(cfg)
    return cfg


def replace_config(cfg: T, **overrides: Any) -> T:
    """A copy of ``cfg`` with fields replaced; unknown names are an error that lists the known ones."""
    names = {f.name for f in dataclasses.fields(cfg)}  # type: ignore[arg-type]
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ValueError(f"unknown config field(s) {unknown}; known fields: {sorted(names)}")
    return dataclasses.replace(cfg, **overrides)  # type: ignore[type-var]


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """The config as a JSON-ready dict (paths as strings, in lists too)."""
    def plain(value: Any) -> Any:
        return str(value) if isinstance(value, Path) else [plain(v) for v in value] if isinstance(value, list) else value

    return {k: plain(v) for k, v in dataclasses.asdict(cfg).items()}


def save_config(cfg: Any, run_dir: str | Path) -> Path:
    """Write ``run_dir / config.json`` atomically."""
    text = json.dumps(config_to_dict(cfg), indent=2, sort_keys=True) + "\n"
    return atomic_write(Path(run_dir) / CONFIG_FILE, lambda f: f.write(text.encode()))


def load_config(cls: type[T], path: str | Path) -> T:
    """Read a config saved by :func:`save_config` (a run folder or the file itself)."""
    path = Path(path)
    if path.is_dir():
        path = path / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no config at {path}: is this a run folder written by this toolkit?")
    try:
        values = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"config file {path} is not valid JSON: {err}") from err
    hints = typing.get_type_hints(cls)
    for name, value in values.items():
        if name in hints and value is not None and _scalar_type(hints[name])[0] is Path:
            values[name] = [Path(v) for v in value] if _is_list(hints[name]) else Path(value)
    return replace_config(cls(), **values)
