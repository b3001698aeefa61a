"""Compiled contract artifacts (ABI and bytecode) committed under ``contracts/artifacts``.

Running a simulation needs no Solidity compiler: artifacts are built by ``make contracts``
(``node contracts/compile.mjs``) with the pinned npm ``solc`` and committed. ``sources_hash``
recomputes the hash the compiler script records, so a test can tell when they are stale.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from eth_utils import keccak

REPO_ROOT = Path(__file__).resolve().parents[2]
CONTRACTS_DIR = REPO_ROOT / "contracts"
ARTIFACTS_DIR = CONTRACTS_DIR / "artifacts"


class ArtifactError(RuntimeError):
    """An artifact is missing or unreadable."""


@dataclass(frozen=True)
class Artifact:
    """One compiled contract."""

    name: str
    abi: tuple[dict, ...]
    bytecode: bytes
    deployed_bytecode: bytes

    @property
    def runtime_hash(self) -> str:
        """keccak256 of the runtime bytecode, hex (what ``eth_getCode`` returns, hashed)."""
        return "0x" + keccak(self.deployed_bytecode).hex()


@cache
def load_artifact(name: str, directory: Path = ARTIFACTS_DIR) -> Artifact:
    """Load ``<directory>/<name>.json``."""
    path = directory / f"{name}.json"
    if not path.is_file():
        raise ArtifactError(
            f"no compiled artifact for contract {name!r} at {path}; run `make contracts`"
        )
    data = json.loads(path.read_text())
    return Artifact(
        name=name,
        abi=tuple(data["abi"]),
        bytecode=bytes.fromhex(data["bytecode"].removeprefix("0x")),
        deployed_bytecode=bytes.fromhex(data["deployedBytecode"].removeprefix("0x")),
    )


def load_manifest(directory: Path = ARTIFACTS_DIR) -> dict:
    """The compiler manifest: compiler version, settings, sources hash, contract names."""
    path = directory / "manifest.json"
    if not path.is_file():
        raise ArtifactError(f"no artifact manifest at {path}; run `make contracts`")
    return json.loads(path.read_text())


def source_files(contracts_dir: Path = CONTRACTS_DIR) -> list[Path]:
    """All Solidity sources, in the order the compile script hashes them."""

    def walk(d: Path) -> list[Path]:
        out: list[Path] = []
        for p in sorted(d.iterdir(), key=lambda q: q.name):
            if p.name in ("artifacts", "node_modules"):
                continue
            if p.is_dir():
                out.extend(walk(p))
            elif p.suffix == ".sol":
                out.append(p)
        return out

    return walk(contracts_dir)


def sources_hash(contracts_dir: Path = CONTRACTS_DIR) -> str:
    """sha256 over (relative path, NUL, content, NUL) of every source; matches compile.mjs."""
    h = hashlib.sha256()
    root = contracts_dir.parent
    for f in source_files(contracts_dir):
        h.update(f.relative_to(root).as_posix().encode())
        h.update(b"\0")
        h.update(f.read_bytes())
        h.update(b"\0")
    return h.hexdigest()


EXCHANGE_INTERFACE = "IMarginExchange"  # structs, errors and events of the exchange


def interface_entries(kind: str, name: str = EXCHANGE_INTERFACE) -> list[dict]:
    """ABI entries of ``kind`` ("event", "error", ...) declared by interface ``name``."""
    return [e for e in load_artifact(name).abi if e.get("type") == kind]


def all_abi_entries(kind: str) -> list[dict]:
    """Every ABI entry of ``kind`` ("error", "event", ...): the exchange interface's first (the
    single place the event decoder and the account mirror follow), then the other compiled
    contracts' (oracle feeds, venues, token)."""
    entries: list[dict] = []
    seen: set[str] = set()
    for name in [*load_manifest().get("interfaces", []), *load_manifest()["contracts"]]:
        for entry in load_artifact(name).abi:
            if entry.get("type") != kind:
                continue
            sig = json.dumps(entry, sort_keys=True)
            if sig not in seen:
                seen.add(sig)
                entries.append(entry)
    return entries
