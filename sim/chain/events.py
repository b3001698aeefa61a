"""Decode raw logs of liqsim's contracts into plain Python records.

One :class:`EventDecoder` holds a topic-0 table built from the compiled ABIs; decoding uses
``eth_abi`` directly (no per-log web3 round trip), so it is cheap enough for every block.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from eth_abi import decode as abi_decode
from eth_utils import event_abi_to_log_topic

from sim.chain.accounts import checksum_address
from sim.chain.artifacts import all_abi_entries
from sim.chain.backend import RawLog


@dataclass(frozen=True)
class Event:
    """A decoded log: event name, emitting contract, arguments by name."""

    name: str
    address: str
    args: dict[str, Any]
    block: int = 0
    tx_index: int = 0
    log_index: int = 0


def _type_str(param: dict) -> str:
    """Canonical ABI type of a parameter (tuples expanded)."""
    t = param["type"]
    if t.startswith("tuple"):
        return "(" + ",".join(_type_str(c) for c in param["components"]) + ")" + t[len("tuple") :]
    return t


def _normalize(value: Any, abi_type: str) -> Any:
    if abi_type == "address":
        return checksum_address(value)
    return value


@dataclass(frozen=True)
class _EventSpec:
    name: str
    indexed: tuple[tuple[str, str], ...]
    data: tuple[tuple[str, str], ...]


class EventDecoder:
    """Decodes logs of the events in ``abis`` (all liqsim events by default)."""

    def __init__(self, abis: Iterable[dict] | None = None):
        self._specs: dict[bytes, _EventSpec] = {}
        for entry in abis if abis is not None else all_abi_entries("event"):
            if entry.get("anonymous"):
                continue
            inputs = entry["inputs"]
            spec = _EventSpec(
                name=entry["name"],
                indexed=tuple((p["name"], _type_str(p)) for p in inputs if p["indexed"]),
                data=tuple((p["name"], _type_str(p)) for p in inputs if not p["indexed"]),
            )
            self._specs[event_abi_to_log_topic(entry)] = spec

    def decode(
        self, log: RawLog, block: int = 0, tx_index: int = 0, log_index: int = 0
    ) -> Event | None:
        """The decoded event, or None for a log this decoder does not know."""
        if not log.topics:
            return None
        spec = self._specs.get(bytes(log.topics[0]))
        if spec is None:
            return None
        args: dict[str, Any] = {}
        for (name, typ), topic in zip(spec.indexed, log.topics[1:], strict=False):
            args[name] = _normalize(abi_decode([typ], bytes(topic))[0], typ)
        if spec.data:
            values = abi_decode([t for _, t in spec.data], bytes(log.data))
            for (name, typ), v in zip(spec.data, values, strict=True):
                args[name] = _normalize(v, typ)
        return Event(spec.name, checksum_address(log.address), args, block, tx_index, log_index)

    def decode_all(self, logs: Iterable[RawLog], block: int = 0, tx_index: int = 0) -> list[Event]:
        """Decode every known log, in order."""
        out = []
        for i, log in enumerate(logs):
            ev = self.decode(log, block, tx_index, i)
            if ev is not None:
                out.append(ev)
        return out
