"""Model aliases: names (``champion``, ``challenger``) for stored model versions, set at run
time (``set_alias``) so that a new version is canaried without editing files or
restarting.

An alias points at one exact version (``name:version``) with its engine. The table lives
where the experiment's state lives (experiments/stores.py): the data dir's
``experiments.sqlite``, or Redis when ``RAG_REDIS_URL`` is set, so every replica and every
model service reads the same one. Each change is recorded: who, when, from, to. A variant
names an alias as ``generator: {alias: challenger}``; the generator service that serves it
follows the table (models/aliases.py).

A change is checked before it is written (``Aliases.set``): the alias's name, that the
model store holds the version (the error lists those it does hold), its engine, and that
it is of the kind (and engine) the variants use the alias for. A refused change writes
nothing.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import bentoml

from core.errors import DependencyUnavailable, InvalidRequest, RagError
from core.settings import Settings
from experiments.stores import SQLITE_NAME, RedisStore, SqliteStore
from experiments.variants import ENGINES, Experiment
from models.aliases import ALIAS_PATTERN
from models.catalog import AliasTarget
from models.store import StoredVersion, stored_version, stored_versions
from storage.redis_connections import DEFAULT_TIMEOUT_S

# The newest changes list_aliases shows.
HISTORY_SHOWN = 50
# Far above any model-store tag (name:version); a longer one is refused, not echoed back.
MAX_TAG_CHARS = 256


@dataclass(frozen=True)
class AliasChange:
    """An alias set to ``model`` (an exact tag) and ``engine``, by whom and when, and what
    it named before (None: nothing)."""

    alias: str
    model: str
    engine: str
    kind: str
    by: str
    at: float
    from_model: str | None = None
    from_engine: str | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: str | bytes) -> AliasChange:
        return cls(**json.loads(raw))

    def after(self, previous: AliasChange | None) -> AliasChange:
        """This change, saying what ``previous`` (the alias's current entry) named."""
        if previous is None:
            return replace(self, from_model=None, from_engine=None)
        return replace(self, from_model=previous.model, from_engine=previous.engine)


class AliasTable(Protocol):
    def current(self, alias: str) -> AliasChange | None:
        """The change that set ``alias`` last; None when it was never set."""
        ...

    def all(self) -> list[AliasChange]:
        """The last change of every alias, by name."""
        ...

    def record(self, change: AliasChange) -> AliasChange:
        """Set the alias, atomically with reading what it named (the change's ``from``);
        returns the change as recorded."""
        ...

    def history(self, limit: int) -> list[AliasChange]:
        """The newest ``limit`` changes of every alias, oldest first."""
        ...


class SqliteAliases(SqliteStore):
    SCHEMA = (
        "CREATE TABLE IF NOT EXISTS alias_changes (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
        "alias TEXT NOT NULL, change TEXT NOT NULL);"
        "CREATE INDEX IF NOT EXISTS alias_changes_by_alias ON alias_changes (alias, seq);"
    )

    def current(self, alias: str) -> AliasChange | None:
        with self._file.connect() as db:
            row = db.execute(
                "SELECT change FROM alias_changes WHERE alias = ? ORDER BY seq DESC LIMIT 1",
                (alias,),
            ).fetchone()
        return AliasChange.from_json(row[0]) if row else None

    def all(self) -> list[AliasChange]:
        with self._file.connect() as db:
            rows = db.execute(
                "SELECT change FROM alias_changes WHERE seq IN "
                "(SELECT max(seq) FROM alias_changes GROUP BY alias) ORDER BY alias"
            ).fetchall()
        return [AliasChange.from_json(raw) for (raw,) in rows]

    def record(self, change: AliasChange) -> AliasChange:
        with self._file.connect() as db:
            # IMMEDIATE: two changes at once cannot both read the same "from".
            db.execute("BEGIN IMMEDIATE")
            row = db.execute(
                "SELECT change FROM alias_changes WHERE alias = ? ORDER BY seq DESC LIMIT 1",
                (change.alias,),
            ).fetchone()
            recorded = change.after(AliasChange.from_json(row[0]) if row else None)
            db.execute(
                "INSERT INTO alias_changes (alias, change) VALUES (?, ?)",
                (change.alias, recorded.to_json()),
            )
        return recorded

    def history(self, limit: int) -> list[AliasChange]:
        with self._file.connect() as db:
            rows = db.execute(
                "SELECT change FROM alias_changes ORDER BY seq DESC LIMIT ?", (limit,)
            ).fetchall()
        return [AliasChange.from_json(raw) for (raw,) in reversed(rows)]


class RedisAliases(RedisStore):
    """A hash of each alias's last change, and a list of every change in order."""

    def current(self, alias: str) -> AliasChange | None:
        raw = self._redis.hget(self._key("aliases"), alias)
        return AliasChange.from_json(raw) if raw else None

    def all(self) -> list[AliasChange]:
        entries = self._redis.hgetall(self._key("aliases"))
        return sorted((AliasChange.from_json(v) for v in entries.values()), key=lambda c: c.alias)

    def record(self, change: AliasChange) -> AliasChange:
        current, changes = self._key("aliases"), self._key("alias_changes")
        recorded: list[AliasChange] = []

        def write(pipe: Any) -> None:
            # Watched: a change written by another replica meanwhile makes redis-py run
            # this again, so "from" is always what the alias named just before.
            raw = pipe.hget(current, change.alias)
            done = change.after(AliasChange.from_json(raw) if raw else None)
            pipe.multi()
            pipe.hset(current, change.alias, done.to_json())
            pipe.rpush(changes, done.to_json())
            recorded[:] = [done]

        self._redis.transaction(write, current)
        return recorded[0]

    def history(self, limit: int) -> list[AliasChange]:
        raw = self._redis.lrange(self._key("alias_changes"), -limit, -1)
        return [AliasChange.from_json(entry) for entry in raw]


def open_aliases(
    data_dir: Path, redis_url: str | None, redis_timeout_s: float = DEFAULT_TIMEOUT_S
) -> AliasTable:
    """The alias table where the experiment's other state is (controller.open_stores):
    Redis when ``redis_url`` is set, else ``data_dir``'s experiments.sqlite."""
    if redis_url:
        return RedisAliases(redis_url, timeout_s=redis_timeout_s)
    return SqliteAliases(data_dir / SQLITE_NAME)


class AliasReader:
    """The alias table as models/ reads it (a models.catalog.AliasLookup), opened on the
    first look-up: building the service's plan (at import, also by `bentoml build`) must
    not create a data dir or connect to Redis."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._table: AliasTable | None = None

    def __call__(self, alias: str) -> AliasTarget | None:
        if self._table is None:
            s = self._settings
            self._table = open_aliases(s.data_dir, s.redis_url, s.redis_timeout_s)
        change = self._table.current(alias)
        return AliasTarget(change.model, change.engine) if change else None


@dataclass(frozen=True)
class AliasUse:
    """How the variants use an alias: for which kind, on which engine (None: any)."""

    kind: str
    engine: str | None
    variants: list[str] = field(default_factory=list)


def alias_uses(experiment: Experiment) -> dict[str, AliasUse]:
    """Per alias some variant names, how they use it (only generators may name one)."""
    engines = experiment.alias_engines()
    users: dict[str, list[str]] = {}
    for variant in experiment.variants:
        if variant.generator.alias is not None:
            users.setdefault(variant.generator.alias, []).append(variant.name)
    return {alias: AliasUse("generator", engines[alias], names) for alias, names in users.items()}


class Aliases:
    """Setting and listing aliases, checked against the model store and the variants."""

    def __init__(self, table: AliasTable, uses: dict[str, AliasUse]) -> None:
        self._table = table
        self.uses = uses

    def set(self, alias: str, model: str, engine: str | None, by: str) -> tuple[AliasChange, bool]:
        """Point ``alias`` at the stored version ``model`` names (``name:version``; a bare
        name or ``latest``: the newest, of ``engine`` when given). Returns the alias's
        entry and whether it changed (setting it to what it names already records
        nothing). Raises InvalidRequest naming the problem; nothing is written then."""
        checked_alias_name(alias)
        version = checked_version(model, engine)
        use = self.uses.get(alias)
        if use is not None:
            checked_use(alias, version, use)
        with _table("set_alias"):
            current = self._table.current(alias)
            if current is not None and (current.model, current.engine) == (
                version.tag,
                version.engine,
            ):
                return current, False
            change = AliasChange(alias, version.tag, version.engine, version.kind, by, time.time())
            return self._table.record(change), True

    def entries(self) -> list[AliasChange]:
        with _table("list_aliases"):
            return self._table.all()

    def history(self, limit: int = HISTORY_SHOWN) -> list[AliasChange]:
        with _table("list_aliases"):
            return self._table.history(limit)


@contextlib.contextmanager
def _table(what: str) -> Iterator[None]:
    """A failing table (Redis down, a locked or unwritable SQLite file) as a 503 naming it."""
    try:
        yield
    except RagError:
        raise
    except Exception as exc:
        raise DependencyUnavailable(
            f"{what} needs the alias table (Redis when RAG_REDIS_URL is set, else the data "
            f"dir's experiments.sqlite), which failed: {type(exc).__name__}: {exc}"
        ) from exc


def checked_alias_name(alias: str) -> str:
    if not isinstance(alias, str) or not re.fullmatch(ALIAS_PATTERN, alias):
        raise InvalidRequest(
            f"alias {alias[:40]!r} is not a valid alias name: a lower-case letter, then up to 31 "
            "lower-case letters, digits or '-' (e.g. champion, challenger)"
        )
    return alias


def checked_version(model: str, engine: str | None) -> StoredVersion:
    """The stored version ``model`` names, of ``engine`` when given; InvalidRequest naming
    the versions the store does hold otherwise."""
    known = sorted({e for engines in ENGINES.values() for e in engines})
    if engine is not None and engine not in known:
        raise InvalidRequest(f"engine {engine!r} is not one of {known}")
    if len(model) > MAX_TAG_CHARS:
        raise InvalidRequest(f"model is longer than {MAX_TAG_CHARS} characters")
    try:
        tag = bentoml.models.Tag.from_taglike(model)
    except (bentoml.exceptions.BentoMLException, ValueError):
        raise InvalidRequest(f"model {model!r} is not a model-store tag (name:version)") from None
    name, version = tag.name, tag.version
    held = stored_versions(name)
    if version and version != "latest":
        found = stored_version(str(tag))
        if found is None:
            raise InvalidRequest(f"the model store holds no {tag}; {_listing(name, held)}")
    else:
        fitting = [v for v in held if engine is None or v.engine == engine]
        if not fitting:
            wanted = f"{engine} version" if engine else "version"
            raise InvalidRequest(
                f"the model store holds no {wanted} of {name}; {_listing(name, held)}"
            )
        found = fitting[0]
    if engine is not None and found.engine != engine:
        raise InvalidRequest(f"{found.tag} is a {found.engine} version, not {engine}")
    return found


def checked_use(alias: str, version: StoredVersion, use: AliasUse) -> None:
    """``version`` fits what the variants use ``alias`` for, else InvalidRequest."""
    users = ", ".join(use.variants)
    if version.kind != use.kind:
        article = "an" if version.kind == "embedder" else "a"
        raise InvalidRequest(
            f"alias {alias!r} is the {use.kind} of variant(s) {users}; {version.tag} is "
            f"{article} {version.kind}"
        )
    if use.engine is not None and version.engine != use.engine:
        raise InvalidRequest(
            f"variant(s) {users} run alias {alias!r} on {use.engine}; {version.tag} is a "
            f"{version.engine} version"
        )
    if version.engine not in ENGINES[version.kind]:
        raise InvalidRequest(f"{version.tag}: {version.engine} is not a {version.kind} engine")


def _listing(name: str, held: list[StoredVersion]) -> str:
    if not held:
        return f"it holds no model named {name!r} (import it with scripts/import_models.py)"
    return f"versions of {name}: " + ", ".join(str(v) for v in held)
