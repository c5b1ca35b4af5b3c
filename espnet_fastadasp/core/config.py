"""The reduction configuration: what to reduce, where, and how much.

A :class:`ReductionConfig` is plain data. It is validated when built (a bad value fails at
once, naming the field), and it round-trips through YAML so that recipes can pass it as a
file (``--reduction_config conf/reduction/fastadasp_constant.yaml``).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from espnet_fastadasp.core.methods import method_names

#: Every reduction method (the registry of :mod:`.methods`); ``none`` leaves the model untouched.
METHODS: tuple[str, ...] = method_names()

#: constant: the same fraction of the current audio tokens at every layer from start_layer on;
#: decay: that fraction at start_layer, falling linearly to 0 at the last layer;
#: once: a single reduction at start_layer (the sparse strategy).
SCHEDULES: tuple[str, ...] = ("constant", "decay", "once")

#: all: the attention each token received from every query row and head (the paper's weights,
#: FastV's and H2O's scores); window: from the last ``score_window`` query rows only (the prompt's
#: instruction, as FastV's own code and SnapKV do), which costs a few rows instead of a pass.
SCORES_FROM: tuple[str, ...] = ("all", "window")


class ConfigError(ValueError):
    """A reduction configuration value is invalid; the message names the field."""


@dataclass(frozen=True)
class ReductionConfig:
    """How to reduce the audio tokens of a Speech LM during prefill.

    Exactly one of ``ratio`` (the fraction of the current audio tokens removed at a reducing
    layer) or ``flops_reduction`` (a target for the decoder's prefill FLOPs, solved per
    utterance into a ratio) must be given, unless ``method`` is ``none``.
    """

    method: str = "fastadasp"
    schedule: str = "constant"
    start_layer: int = 2
    ratio: float | None = None
    flops_reduction: float | None = None
    seed: int = 0
    #: Query rows per chunk when summing the attention each token received (bounds memory).
    attention_chunk_size: int = 1024
    #: Which query rows' attention scores the tokens (see :data:`SCORES_FROM`).
    scores_from: str = "all"
    #: The number of last query rows with ``scores_from="window"``.
    score_window: int = 8
    #: A flops_reduction target an utterance cannot reach (too little audio for its text):
    #: ``error`` raises; ``max`` uses the most aggressive plan and logs a warning (the stats
    #: show what was achieved). Never a silent shortfall.
    unreachable: str = "error"

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"method={self.method!r} is not one of {', '.join(METHODS)}")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"schedule={self.schedule!r} is not one of {', '.join(SCHEDULES)}")
        if not isinstance(self.start_layer, int) or isinstance(self.start_layer, bool) or self.start_layer < 0:
            raise ConfigError(f"start_layer={self.start_layer!r} must be an integer >= 0")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise ConfigError(f"seed={self.seed!r} must be an integer")
        if self.unreachable not in ("error", "max"):
            raise ConfigError(f"unreachable={self.unreachable!r} must be 'error' or 'max'")
        if self.scores_from not in SCORES_FROM:
            raise ConfigError(f"scores_from={self.scores_from!r} is not one of {', '.join(SCORES_FROM)}")
        if not isinstance(self.score_window, int) or isinstance(self.score_window, bool) or self.score_window < 1:
            raise ConfigError(f"score_window={self.score_window!r} must be a positive integer")
        if not isinstance(self.attention_chunk_size, int) or self.attention_chunk_size < 1:
            raise ConfigError(f"attention_chunk_size={self.attention_chunk_size!r} must be a positive integer")
        for name in ("ratio", "flops_reduction"):
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"{name}={value!r} must be a number in [0, 1)")
            if not 0.0 <= float(value) < 1.0:
                raise ConfigError(f"{name}={value!r} must be in [0, 1)")
        if self.method == "none":
            return
        if (self.ratio is None) == (self.flops_reduction is None):
            raise ConfigError(
                f"method={self.method!r} needs exactly one of ratio or flops_reduction "
                f"(got ratio={self.ratio!r}, flops_reduction={self.flops_reduction!r})"
            )

    @property
    def is_noop(self) -> bool:
        """True when applying this config cannot change the model's output."""
        if self.method == "none":
            return True
        return (self.ratio if self.ratio is not None else self.flops_reduction) == 0.0

    def replace(self, **changes: Any) -> ReductionConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], **overrides: Any) -> ReductionConfig:
        """Build from a mapping; unknown keys are an error (a typo must not be ignored)."""
        merged = {**dict(data or {}), **overrides}
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(merged) - known)
        if unknown:
            raise ConfigError(
                f"unknown reduction config key(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        return cls(**merged)

    def save_yaml(self, path: str | Path) -> None:
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))

    @classmethod
    def load_yaml(cls, path: str | Path, **overrides: Any) -> ReductionConfig:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"reduction config file not found: {path}")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
        if not isinstance(data, Mapping):
            raise ConfigError(f"{path}: expected a mapping of config keys, got {type(data).__name__}")
        try:
            return cls.from_dict(data, **overrides)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from exc


#: ``METHOD[_SCHEDULE][-wW]`` then ``@TARGET`` or ``%RATIO``
_SPEC = re.compile(r"^(?P<name>[A-Za-z0-9_]+?)(?:-w(?P<window>\d+))?(?P<sep>[@%])(?P<amount>.*)$")


def parse_reduction_spec(spec: str, **defaults: Any) -> tuple[str, ReductionConfig]:
    """A recipe's short name for a setting -> ``(tag, config)``.

    Forms: ``none``; ``METHOD@TARGET`` or ``METHOD_SCHEDULE@TARGET`` (TARGET is a prefill FLOPs
    reduction, e.g. ``fastadasp_constant@0.3``, ``fastadasp_once@0.5``, ``fastv@0.3``; the
    schedule defaults to constant); ``METHOD_SCHEDULE%RATIO`` for a fixed per-layer ratio; either
    with ``-wW`` before the ``@``/``%`` to score from the last W query rows
    (``h2o-w32@0.5``: ``scores_from="window", score_window=32``); or a path to a YAML config (the
    tag is the file's stem). ``defaults`` (e.g. ``start_layer``) fill fields the spec does not set.
    """
    spec = spec.strip()
    if spec.endswith((".yaml", ".yml")):
        return Path(spec).stem, ReductionConfig.load_yaml(spec, **defaults)
    if spec == "none":
        return "none", ReductionConfig(method="none", **{k: v for k, v in defaults.items() if k in ("seed",)})
    match = _SPEC.match(spec)
    if match is None or spec.count("@") + spec.count("%") != 1:
        raise ConfigError(
            f"reduction spec {spec!r}: want none, METHOD[_SCHEDULE][-wW]@TARGET, METHOD[_SCHEDULE][-wW]%RATIO "
            "or a .yaml"
        )
    name, window, sep, amount = match.group("name", "window", "sep", "amount")
    field_name = "flops_reduction" if sep == "@" else "ratio"
    method, schedule = name, defaults.pop("schedule", "constant")
    for sched in SCHEDULES:
        if name.endswith("_" + sched):
            method, schedule = name[: -len(sched) - 1], sched
    if method not in METHODS:
        raise ConfigError(f"reduction spec {spec!r}: unknown method {method!r} (one of {', '.join(METHODS)})")
    try:
        value = float(amount)
    except ValueError:
        raise ConfigError(f"reduction spec {spec!r}: {amount!r} is not a number") from None
    scoring = {} if window is None else {"scores_from": "window", "score_window": int(window)}
    tag = f"{method}_{schedule}{'' if window is None else f'-w{window}'}{sep}{amount}"
    return tag, ReductionConfig.from_dict(
        {"method": method, "schedule": schedule, field_name: value, **scoring, **defaults}
    )
