"""Helion's ``Config``: one launch configuration of a kernel.

The API and the JSON format are those of ``helion.runtime.config.Config``: a file written by
``helion.Config.save`` loads here and saves back byte for byte, keys this version does not
know included (they are kept as user keys). Unlike Helion, the fields Helion documents are
checked when a Config is built, so a bad value fails here, naming the field, instead of deep
inside a compile.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Literal, NamedTuple

from helion_optuna.errors import InvalidConfig

PidType = Literal["flat", "xyz", "persistent_blocked", "persistent_interleaved"]
Indexing = Literal["pointer", "tensor_descriptor", "block_ptr"]
EvictionPolicy = Literal["", "first", "last"]

PID_TYPES = ("flat", "xyz", "persistent_blocked", "persistent_interleaved")
INDEXING = ("pointer", "tensor_descriptor", "block_ptr")
EVICTION_POLICIES = ("", "first", "last")

#: What an absent field reads as, the way Helion reads it.
DEFAULTS: dict[str, object] = {"num_warps": 4, "num_stages": 1, "pid_type": "flat"}


def is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_permutation(value: object) -> bool:
    return (
        isinstance(value, list)
        and all(is_int(v) for v in value)
        and sorted(value) == list(range(len(value)))
    )


class _Rule(NamedTuple):
    check: Callable[[object], bool]
    allowed: str
    is_list: bool = True
    single_value_ok: bool = False  # Helion also takes one value for the whole list


_RULES: dict[str, _Rule] = {
    "block_sizes": _Rule(lambda v: is_int(v) and v > 0, "positive integers"),
    "loop_orders": _Rule(_is_permutation, "permutations of 0..n-1, e.g. [1, 0]"),
    "flatten_loops": _Rule(lambda v: isinstance(v, bool), "booleans"),
    "l2_groupings": _Rule(lambda v: is_int(v) and v > 0, "positive integers"),
    "reduction_loops": _Rule(
        lambda v: v is None or (is_int(v) and v > 0), "positive integers or None"
    ),
    "range_unroll_factors": _Rule(lambda v: is_int(v) and v >= 0, "non-negative integers"),
    "range_warp_specializes": _Rule(lambda v: v is None or isinstance(v, bool), "bool or None"),
    "range_num_stages": _Rule(lambda v: is_int(v) and v >= 0, "non-negative integers"),
    "range_multi_buffers": _Rule(lambda v: v is None or isinstance(v, bool), "bool or None"),
    "range_flattens": _Rule(lambda v: v is None or isinstance(v, bool), "bool or None"),
    "static_ranges": _Rule(lambda v: isinstance(v, bool), "booleans"),
    "load_eviction_policies": _Rule(
        lambda v: v in EVICTION_POLICIES, "'', 'first', 'last'", single_value_ok=True
    ),
    "num_warps": _Rule(lambda v: is_int(v) and v > 0, "a positive integer", is_list=False),
    "num_stages": _Rule(lambda v: is_int(v) and v >= 0, "a non-negative integer", False),
    "pid_type": _Rule(lambda v: v in PID_TYPES, ", ".join(map(repr, PID_TYPES)), False),
    "indexing": _Rule(
        lambda v: v in INDEXING, ", ".join(map(repr, INDEXING)), single_value_ok=True
    ),
}

#: The fields Helion documents, in its order; any other key is a user-defined parameter.
FIELDS: tuple[str, ...] = tuple(_RULES)


def check_field(name: str, value: object) -> None:
    """Raise InvalidConfig unless ``value`` is allowed for the Config field ``name``."""
    rule = _RULES.get(name)
    if rule is None:
        return
    if rule.is_list and isinstance(value, list):
        for i, item in enumerate(value):
            if not rule.check(item):
                raise InvalidConfig(
                    f"{name}[{i}]: {item!r} is not allowed; allowed: {rule.allowed}"
                )
        return
    if (not rule.is_list or rule.single_value_ok) and rule.check(value):
        return
    shape = f"a list of {rule.allowed}" if rule.is_list else rule.allowed
    if rule.single_value_ok:
        shape += " (or one of them for every entry)"
    raise InvalidConfig(f"{name}: {value!r} is not allowed; expected {shape}")


class Config(Mapping[str, object]):
    """A kernel configuration; ``config`` holds only the fields that were given."""

    config: dict[str, object]

    def __init__(
        self,
        *,
        block_sizes: list[int] | None = None,
        loop_orders: list[list[int]] | None = None,
        flatten_loops: list[bool] | None = None,
        l2_groupings: list[int] | None = None,
        reduction_loops: list[int | None] | None = None,
        range_unroll_factors: list[int] | None = None,
        range_warp_specializes: list[bool | None] | None = None,
        range_num_stages: list[int] | None = None,
        range_multi_buffers: list[bool | None] | None = None,
        range_flattens: list[bool | None] | None = None,
        static_ranges: list[bool] | None = None,
        load_eviction_policies: list[EvictionPolicy] | None = None,
        num_warps: int | None = None,
        num_stages: int | None = None,
        pid_type: PidType | None = None,
        indexing: Indexing | list[Indexing] | None = None,
        **kwargs: object,
    ) -> None:
        given = {
            "block_sizes": block_sizes,
            "loop_orders": loop_orders,
            "flatten_loops": flatten_loops,
            "l2_groupings": l2_groupings,
            "reduction_loops": reduction_loops,
            "range_unroll_factors": range_unroll_factors,
            "range_warp_specializes": range_warp_specializes,
            "range_num_stages": range_num_stages,
            "range_multi_buffers": range_multi_buffers,
            "range_flattens": range_flattens,
            "static_ranges": static_ranges,
            "load_eviction_policies": load_eviction_policies,
            "num_warps": num_warps,
            "num_stages": num_stages,
            "pid_type": pid_type,
            "indexing": indexing,
            **kwargs,
        }
        self.config = {}
        for name, value in given.items():
            if value is not None:
                check_field(name, value)
                self.config[name] = value

    # Mapping, so that ``helion.Config(**config)`` works.
    def __getitem__(self, key: str) -> object:
        return self.config[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.config)

    def __len__(self) -> int:
        return len(self.config)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Config):
            return NotImplemented
        return self.config == other.config

    def __hash__(self) -> int:
        return hash(_hashable(self.config))

    def __repr__(self) -> str:
        return "Config(" + ", ".join(f"{k}={v!r}" for k, v in self.config.items()) + ")"

    def to_json(self) -> str:
        """The config as a JSON object (Helion's format: two-space indent)."""
        return json.dumps(self.config, indent=2)

    @classmethod
    def from_json(cls, json_str: str) -> Config:
        """Parse a JSON object; keys keep their order, unknown keys become user keys."""
        try:
            data = json.loads(json_str)
        except json.JSONDecodeError as e:
            raise InvalidConfig(f"malformed Config JSON: {e}") from None
        if not isinstance(data, dict):
            raise InvalidConfig(
                f"a Config JSON document must be an object, got {type(data).__name__}"
            )
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> Config:
        """A Config of a mapping (a parsed JSON object), every field checked; keys keep their
        order, unknown keys become user keys."""
        if "self" in data:  # Helion's Config(**data) cannot take it either
            raise InvalidConfig("self: not allowed as a Config key (Config(**config) cannot "
                                "take it); rename it")
        if not all(isinstance(k, str) for k in data):
            raise InvalidConfig(f"keys: {list(data)!r} are not all names (text)")
        config = cls(**data)
        config.config = {k: config.config[k] for k in data if k in config.config}
        return config

    def save(self, path: str | Path) -> None:
        """Write the config to ``path`` atomically: a failed save leaves the old file intact."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as f:
                f.write(self.to_json())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @classmethod
    def load(cls, path: str | Path) -> Config:
        return cls.from_json(Path(path).read_text())

    @property
    def block_sizes(self) -> list[int]:
        return self.config.get("block_sizes", [])  # type: ignore[return-value]

    @property
    def loop_orders(self) -> list[list[int]]:
        return self.config.get("loop_orders", [])  # type: ignore[return-value]

    @property
    def flatten_loops(self) -> list[bool]:
        return self.config.get("flatten_loops", [])  # type: ignore[return-value]

    @property
    def l2_groupings(self) -> list[int]:
        return self.config.get("l2_groupings", [])  # type: ignore[return-value]

    @property
    def reduction_loops(self) -> list[int | None]:
        return self.config.get("reduction_loops", [])  # type: ignore[return-value]

    @property
    def range_unroll_factors(self) -> list[int]:
        return self.config.get("range_unroll_factors", [])  # type: ignore[return-value]

    @property
    def range_warp_specializes(self) -> list[bool | None]:
        return self.config.get("range_warp_specializes", [])  # type: ignore[return-value]

    @property
    def range_num_stages(self) -> list[int]:
        return self.config.get("range_num_stages", [])  # type: ignore[return-value]

    @property
    def range_multi_buffers(self) -> list[bool | None]:
        return self.config.get("range_multi_buffers", [])  # type: ignore[return-value]

    @property
    def range_flattens(self) -> list[bool | None]:
        return self.config.get("range_flattens", [])  # type: ignore[return-value]

    @property
    def static_ranges(self) -> list[bool]:
        return self.config.get("static_ranges", [])  # type: ignore[return-value]

    @property
    def load_eviction_policies(self) -> list[EvictionPolicy]:
        return self.config.get("load_eviction_policies", [])  # type: ignore[return-value]

    @property
    def num_warps(self) -> int:
        return self.config.get("num_warps", DEFAULTS["num_warps"])  # type: ignore[return-value]

    @property
    def num_stages(self) -> int:
        return self.config.get("num_stages", DEFAULTS["num_stages"])  # type: ignore[return-value]

    @property
    def pid_type(self) -> PidType:
        return self.config.get("pid_type", DEFAULTS["pid_type"])  # type: ignore[return-value]

    @property
    def indexing(self) -> Indexing | list[Indexing]:
        return self.config.get("indexing", [])  # type: ignore[return-value]


def _hashable(value: object) -> object:
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, dict):
        return frozenset((k, _hashable(v)) for k, v in value.items())
    return value
