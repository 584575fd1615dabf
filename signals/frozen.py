"""The frozen parameter file: what the live runner trades, with where it came from.

Written by ``signals freeze`` and the walk-forward; read by ``signals live`` and ``promote``.
JSON, UTF-8, keys sorted, two-space indent, written atomically. Loading checks the schema
version, unknown keys (with "did you mean"), the strategy name, its parameters, that
``params_id`` matches its content, that ``strategy_hash`` matches the code that would run
(unless explicitly allowed), and that ``checksum`` matches the whole content. The file is the
single source of truth for parameters: no setting elsewhere overrides it.

Sealing: every write sets ``checksum`` to the sha256 of the canonical JSON (sorted keys, no
spaces, UTF-8) of every other field, so a hand edit anywhere in the file (a metric the promotion
gate reads, the promotion block, the provenance) is refused on load, naming the file. A file
written before sealing existed has no ``checksum``: it still loads, with a one-line warning that
says how to re-seal it (``signals promote FILE --to FILE`` writes it sealed). The checksum catches
edits, not forgeries: anyone can recompute a sha256, and deleting the field makes a file look old.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from signals import __version__
from signals.config import validation_messages
from signals.errors import ParamsError, SignalsError
from signals.identity import check as check_identity
from signals.identity import identity, params_id, refusal_remedy, require_saved, strategy_hash
from signals.strategy_paths import get_strategy
from strategies import Strategy
from strategies.params import as_dict

SCHEMA_VERSION = 1
FILE_MODE = 0o644

log = logging.getLogger(__name__)


class FrozenFileError(SignalsError):
    """A frozen parameter file is missing, corrupt, or does not match the code."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataInfo(_Strict):
    """The candles the parameters were chosen on."""

    source: str
    first_candle: str | None = None
    last_candle: str | None = None
    rows: int = 0


class WalkForwardInfo(_Strict):
    """How the parameters were tuned (absent for hand-frozen files)."""

    scheme: str
    folds: int
    trials: int
    seed: int
    objective: str | None = None


class Promotion(_Strict):
    """How the file passed (or was forced through) the promotion gate."""

    passed: bool
    forced: bool = False
    failures: list[str] = Field(default_factory=list)
    promoted_at: str | None = None


class StrategyIdentity(_Strict):
    """The strategy's identity (`signals.identity`): its module's source and its behaviour."""

    version: int
    module_sha256: str
    behaviour_sha256: str


class RefrozenFrom(_Strict):
    """The file a re-frozen file was made from (``signals freeze --from``): its audit trail."""

    path: str  # the old file, absolute
    sha256: str  # of the old file's bytes, as `sha256sum` prints it
    params_id: str
    strategy_hash: str
    identity: StrategyIdentity | None = None  # None for a file frozen before identity version 2
    behaviour_matched: bool | None = None  # its behaviour equals the current code's; None: unknown
    sealed: bool = True  # the old file had a checksum (verified); False: written before sealing
    created_at: str
    dropped: list[str] = Field(default_factory=list)  # its evidence, not carried over


class FrozenParams(_Strict):
    """The frozen parameter file's content (ARCHITECTURE.md, "Frozen parameter file")."""

    schema_version: int
    params_id: str
    strategy: str
    strategy_hash: str
    symbol: str
    timeframe: str
    params: dict[str, Any]
    direction: Literal["long", "short", "both"] = "long"
    costs: dict[str, float] = Field(default_factory=dict)
    data: DataInfo | None = None
    walkforward: WalkForwardInfo | None = None
    metrics: dict[str, float | None] | None = None
    promotion: Promotion | None = None
    created_at: str
    code_version: str
    identity: StrategyIdentity | None = None  # absent in files frozen before identity version 2
    refrozen_from: RefrozenFrom | None = None  # absent unless written by `signals freeze --from`
    checksum: str | None = None  # sha256 of everything else; None in files written before it


def code_version() -> str:
    """Return the package version plus the git commit of the code, when it is a checkout."""
    root = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return __version__
    return f"{__version__}+g{commit}" if commit else __version__


def freeze(
    *,
    strategy: str | Strategy,
    timeframe: str,
    params: Any,
    symbol: str = "BTCUSDT",
    direction: str = "long",
    costs: dict[str, float] | None = None,
    data: DataInfo | None = None,
    walkforward: WalkForwardInfo | None = None,
    metrics: dict[str, float | None] | None = None,
    created_at: str | None = None,
    refrozen_from: RefrozenFrom | None = None,
) -> FrozenParams:
    """Build a frozen parameter set for `strategy` with validated `params` (a Params or dict)."""
    impl = get_strategy(strategy)
    require_saved(impl)
    if timeframe not in impl.timeframes:
        raise ParamsError(
            f"{impl.name} declares timeframes {', '.join(impl.timeframes)}, not {timeframe}"
        )
    typed = impl.params(params if isinstance(params, dict) else as_dict(params))
    frozen = FrozenParams(
        schema_version=SCHEMA_VERSION,
        params_id=params_id(impl, timeframe, typed),
        strategy=impl.name,
        strategy_hash=strategy_hash(impl),
        symbol=symbol,
        timeframe=timeframe,
        params=as_dict(typed),
        direction=direction,  # type: ignore[arg-type]  # a str: the pydantic model validates it
        costs=dict(costs or {}),
        data=data,
        walkforward=walkforward,
        metrics=metrics,
        created_at=created_at or datetime.now(UTC).isoformat(timespec="seconds"),
        code_version=code_version(),
        identity=StrategyIdentity(**identity(impl, timeframe, typed)),
        refrozen_from=refrozen_from,
    )
    return seal(frozen)


def _payload(frozen: FrozenParams) -> dict[str, Any]:
    payload = frozen.model_dump(mode="json")
    # optional blocks a file lacks are left out, so files written before them keep their checksum
    for key in ("identity", "refrozen_from"):
        if payload.get(key) is None:
            payload.pop(key, None)
    return payload


def content_checksum(frozen: FrozenParams) -> str:
    """Return the sha256 (hex) of the canonical JSON of every field the file holds but itself."""
    payload = _payload(frozen)
    payload.pop("checksum", None)
    text = json.dumps(
        payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def seal(frozen: FrozenParams) -> FrozenParams:
    """Return `frozen` with ``checksum`` set to its content's (what every write stores)."""
    return frozen.model_copy(update={"checksum": content_checksum(frozen)})


def dumps(frozen: FrozenParams) -> str:
    """Return the canonical JSON text of a frozen file, sealed (sorted keys, 2-space indent)."""
    payload = _payload(seal(frozen))
    return json.dumps(payload, sort_keys=True, indent=2, allow_nan=False) + "\n"


def write_frozen(frozen: FrozenParams, path: Path | str) -> Path:
    """Write `frozen` to `path` atomically (a temporary file in the same folder, renamed)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(dumps(frozen))
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, FILE_MODE & ~_umask())  # mkstemp makes 0600; the runner may be another user
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def load_frozen(path: Path | str, *, allow_hash_mismatch: bool = False) -> FrozenParams:
    """Read and verify a frozen file; raise `FrozenFileError` saying what is wrong and where."""
    return read_frozen(path, allow_hash_mismatch=allow_hash_mismatch)[0]


def read_frozen(
    path: Path | str, *, allow_hash_mismatch: bool = False
) -> tuple[FrozenParams, bytes]:
    """Read and verify a frozen file as `load_frozen` does; also return the bytes it holds."""
    path = Path(path)
    try:
        data = path.read_bytes()
        raw = json.loads(data.decode("utf-8"))
    except FileNotFoundError:
        raise FrozenFileError(f"{path}: frozen parameter file not found") from None
    except OSError as exc:  # a directory, no permission, an I/O error
        raise FrozenFileError(f"{path}: cannot read the frozen file ({exc.strerror})") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FrozenFileError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise FrozenFileError(f"{path}: expected a JSON object")
    version = raw.get("schema_version")
    if version != SCHEMA_VERSION:
        raise FrozenFileError(
            f"{path}: schema_version {version!r} is not supported "
            f"(this code reads {SCHEMA_VERSION})"
        )
    try:
        frozen = FrozenParams.model_validate(raw)
    except ValidationError as exc:
        lines = validation_messages(exc, FrozenParams)
        raise FrozenFileError(f"{path}: invalid frozen file\n  " + "\n  ".join(lines)) from None
    verify(frozen, origin=str(path), allow_hash_mismatch=allow_hash_mismatch)
    return check_seal(frozen, origin=str(path)), data


def verify(frozen: FrozenParams, *, origin: str, allow_hash_mismatch: bool = False) -> FrozenParams:
    """Check a frozen set against the code: strategy, parameters, params_id and strategy_hash."""
    try:
        impl = get_strategy(frozen.strategy)
        typed = impl.params(frozen.params)
    except SignalsError as exc:
        raise FrozenFileError(f"{origin}: {exc}") from None
    if frozen.identity is not None:
        return _verify_identity(frozen, impl, typed, origin, allow_hash_mismatch)
    current = strategy_hash(impl)
    if frozen.strategy_hash != current and not allow_hash_mismatch:
        raise FrozenFileError(
            f"{origin}: strategy_hash {frozen.strategy_hash[:12]} does not match the code of "
            f"{impl.name!r} ({current[:12]}): the strategy changed since this file was frozen. "
            f"{refusal_remedy(origin)}"
        )
    expected = params_id(impl, frozen.timeframe, typed)
    if frozen.strategy_hash == current and frozen.params_id != expected:
        raise FrozenFileError(
            f"{origin}: params_id {frozen.params_id} does not match its content ({expected}); "
            "the file was edited by hand"
        )
    return frozen


def _verify_identity(
    frozen: FrozenParams, impl: Strategy, typed: Any, origin: str, allow_mismatch: bool
) -> FrozenParams:
    # The params_id was derived with the strategy_hash of its day: recompute it with that one.
    expected = params_id(impl, frozen.timeframe, typed, hash_=frozen.strategy_hash)
    if frozen.params_id != expected:
        raise FrozenFileError(
            f"{origin}: params_id {frozen.params_id} does not match its content ({expected}); "
            "the file was edited by hand"
        )
    assert frozen.identity is not None
    problem = check_identity(frozen.identity.model_dump(), impl, frozen.timeframe, typed)
    if problem and not allow_mismatch:
        raise FrozenFileError(f"{origin}: {problem}. {refusal_remedy(origin)}")
    return frozen


def check_seal(frozen: FrozenParams, *, origin: str) -> FrozenParams:
    """Refuse a frozen set whose checksum does not match its content; warn when it has none."""
    if frozen.checksum is None:
        log.warning(
            "%s: no checksum (written before frozen files were sealed), so a hand edit cannot be "
            "detected; re-seal it with `signals promote %s --to %s` (--force if it fails the "
            "gate) or write it again",
            origin, origin, origin,
        )  # fmt: skip
    elif frozen.checksum != content_checksum(frozen):
        raise FrozenFileError(
            f"{origin}: the content does not match its checksum: the file was edited by hand "
            "after it was written; write it again (signals freeze, walkforward, promote) "
            "instead of editing it"
        )
    return frozen


def typed_params(frozen: FrozenParams) -> Any:
    """Return the strategy's typed `Params` of a verified frozen set."""
    return get_strategy(frozen.strategy).params(frozen.params)
