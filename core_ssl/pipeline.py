"""One configuration pipeline for every command: flags to a validated config, before anything exists.

Every command turns its command line into its config the same way, through one
:class:`ConfigPipeline`:

1. **Parse once** (:meth:`ConfigPipeline.read`): the dataclass defaults, then the ``--preset``
   (or the command's default preset), then the flags; together with the names of the fields
   the command line gave (its flags and the named preset's fields).
2. **Merge on resume** (:meth:`ConfigPipeline.finish`): with ``--resume``, the run folder's
   saved ``config.json`` is the config, and the flags given must agree with it
   (:func:`core_ssl.run.resume_config`: runtime flags may change, training may lengthen).
3. **Resolve**: the command's own defaults that depend on other fields (a method's published
   settings, a mode's epochs, the default run folder).
4. **Validate**: every field against the rules its declaration states (``min`` / ``max`` /
   ``gt`` / ``lt`` / ``choices`` / ``nonempty`` in its metadata,
   :func:`core_ssl.config.validate_config`), then the command's checks across fields.

Only then does a command open its run folder (:class:`core_ssl.run.RunFolder`) or write any
file, so a flag that cannot work is refused (exit 2, one line) with nothing created::

    PIPELINE = ConfigPipeline(TrainConfig, presets=PRESETS, run_dir_field="run_dir",
                              runtime=("device",), extendable=("epochs",), resolve=fill_defaults)

    def main(argv):
        return train(*PIPELINE.read(argv))

    def train(cfg, given=None):
        cfg = PIPELINE.finish(cfg, given)
        with RunFolder(cfg.run_dir, cfg.resume, COMMAND) as run:
            ...
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from core_ssl.cli import UsageError
from core_ssl.config import CONFIG_FILE, build_parser, load_config, replace_config, validate_config


def _identity(cfg: Any) -> Any:
    return cfg


@dataclass(frozen=True)
class ConfigPipeline:
    """How one command turns its command line into its config; see the module docstring.

    Args:
        cls: the config dataclass.
        presets: named overrides for ``--preset``.
        default_preset: chooses the preset when none is named, from the parsed flags (e.g. by
            the device); None = no preset.
        description: the ``--help`` summary (default: the dataclass's docstring).
        run_dir_field: the field naming the run folder, for training commands (None for the
            others, which have no resume).
        runtime: fields that may change on ``--resume``.
        extendable: fields (training length) that may grow on ``--resume``.
        resolve: fills the defaults that depend on other fields; must be idempotent.
        check: the command's checks across fields (raise :class:`UsageError`).
    """

    cls: type
    presets: dict[str, dict[str, Any]] | None = None
    default_preset: Callable[[dict[str, Any]], str | None] | None = None
    description: str | None = None
    run_dir_field: str | None = None
    runtime: tuple[str, ...] = ()
    extendable: tuple[str, ...] = ()
    resolve: Callable[[Any], Any] = _identity
    check: Callable[[Any], None] | None = field(default=None)

    def read(self, argv: Sequence[str]) -> tuple[Any, set[str]]:
        """Step 1: (the config of defaults, preset and flags, the fields the command line named)."""
        args = vars(build_parser(self.cls, self.description, self.presets).parse_args(list(argv)))
        named = args.pop("preset", None)
        preset = named if named is not None or self.default_preset is None else self.default_preset(args)
        given = set(args) | set((self.presets or {}).get(named) or ())
        values = {**((self.presets or {}).get(preset) or {}), **args}
        return replace_config(self.cls(), **values), given

    def finish(self, cfg: Any, given: Iterable[str] | None = None) -> Any:
        """Steps 2 to 4: merged with the saved config on resume, resolved, validated.

        ``given``: the fields named on the command line; None = those ``cfg`` sets away from the
        dataclass defaults (for a config built in code).
        """
        if given is None:
            defaults = self.cls()
            given = {f.name for f in dataclasses.fields(cfg) if getattr(cfg, f.name) != getattr(defaults, f.name)}
        if self.run_dir_field is not None and getattr(cfg, "resume", False):
            cfg = self._merge_saved(cfg, set(given))
        validate_config(cfg)  # the values given, before the command's defaults are derived from them
        cfg = self.resolve(cfg)
        self.validate(cfg)
        return cfg

    def parse(self, argv: Sequence[str]) -> Any:
        """All four steps: the validated config of a command line."""
        return self.finish(*self.read(argv))

    def validate(self, cfg: Any) -> None:
        """Step 4 alone: the declared rules of every field, then the command's checks."""
        validate_config(cfg)
        if self.check is not None:
            self.check(cfg)

    def _merge_saved(self, cfg: Any, given: set[str]) -> Any:
        from core_ssl.run import resume_config  # core_ssl.run imports torch

        run_dir = getattr(cfg, self.run_dir_field)
        if run_dir is None:
            raise UsageError("--resume needs --run-dir", "give the folder of the run to continue")
        if not (Path(run_dir) / CONFIG_FILE).is_file():
            return cfg  # nothing to continue: the run folder refuses --resume with the reason
        saved = self.resolve(load_config(self.cls, run_dir))
        return resume_config(saved, self.resolve(cfg), given, self.run_dir_field,
                             runtime=self.runtime, extendable=self.extendable)
