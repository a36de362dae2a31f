"""Model aliases on the engines' side: a name (``champion``, ``challenger``) for one stored
version, read at run time, and the version a model service serves for it.

An alias names an exact model-store tag and its engine (models.catalog.AliasTarget); the
table of aliases lives above this layer (experiments/aliases.py) and reaches it as an
``AliasLookup``. A model service
that follows an alias looks it up every few seconds (``RAG_ALIAS_REFRESH_S``) and, when it
moved, loads the new version beside the old one and swaps it in between two calls: calls
already running finish on the old version, which is released after the last of them.
Never more than two versions of one alias are held: while the old one still has calls
running, a further move waits for them to finish.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

from models.catalog import AliasLookup, AliasRef
from models.store import ModelSource, stored_engine

logger = logging.getLogger(__name__)
# An alias: a lower-case letter, then up to 31 lower-case letters, digits or dashes (it
# also names the model service that follows it, generator-alias-<alias>).
ALIAS_PATTERN = r"^[a-z][a-z0-9-]{0,31}$"
E = TypeVar("E")


class AliasView:
    """What an alias names as this process last read it, read again after ``refresh_s``.
    While the alias names nothing, ``fallback`` (the settings' model); while the table
    cannot be read, the last version read (at first ``fallback``): an outage of the
    table never stops a model service or a query.

    ``wait=False`` (the API process, on its event loop): a stale read answers at once with
    what was read last and reads the table again in a thread, so that a query never waits
    on the table (a Redis that hangs costs a read its timeout)."""

    def __init__(
        self,
        ref: AliasRef,
        lookup: AliasLookup,
        fallback: ModelSource,
        refresh_s: float,
        *,
        wait: bool = True,
    ) -> None:
        self.ref = ref
        self._lookup = lookup
        self._fallback = fallback
        self._refresh_s = refresh_s
        self._wait = wait
        self._lock = threading.Lock()
        self._reading = threading.Lock()  # one read of the table at a time
        self._source = fallback
        self._label = ""
        self._read_at = float("-inf")
        self._failing = False
        if not wait:
            self._refresh()  # now, off the event loop: later reads never wait

    def source(self) -> ModelSource:
        """The version to serve now."""
        return self._read()[0]

    def label(self) -> str:
        """The exact tag of the version to serve now (what answers report)."""
        return self._read()[1]

    def _read(self) -> tuple[ModelSource, str]:
        with self._lock:
            stale = time.monotonic() - self._read_at >= self._refresh_s
            known = bool(self._label)
        if stale and (self._wait or not known):
            self._refresh()
        elif stale and not self._reading.locked():
            threading.Thread(
                target=self._refresh, name=f"alias-read-{self.ref.name}", daemon=True
            ).start()
        with self._lock:
            return self._source, self._label

    def _refresh(self) -> None:
        with self._reading:
            source = self._looked_up()
            label = source.store_tag() or source.reference
            with self._lock:
                self._source, self._label, self._read_at = source, label, time.monotonic()

    def _looked_up(self) -> ModelSource:
        try:
            target = self._lookup(self.ref.name)
        except Exception:
            if not self._failing:  # once per outage, not at every refresh
                logger.warning(
                    "cannot read alias %s; serving %s until it can be read",
                    self.ref.name,
                    self._source.reference,
                    exc_info=True,
                )
            self._failing = True
            return self._source
        if self._failing:
            logger.info("alias %s can be read again", self.ref.name)
            self._failing = False
        return self._fallback if target is None else ModelSource(target.model, target.engine)


@dataclass
class Loaded(Generic[E]):
    """One loaded version: its engine, the label answers report, and the calls on it."""

    engine: E
    label: str
    source: ModelSource
    calls: int = 0


class ServedVersion(Generic[E]):
    """The version a model service serves: fixed, or following an alias (``view``).

    ``load(source)`` loads a version and returns its engine and label. ``using()`` lends
    the current version to one call; ``follow()`` looks at the alias once and swaps a new
    version in when it moved.
    """

    def __init__(
        self,
        load: Callable[[ModelSource], tuple[E, str]],
        source: ModelSource,
        view: AliasView | None = None,
    ) -> None:
        self._load = load
        self._view = view
        self._lock = threading.Lock()  # guards current, retired and the call counts
        self._switching = threading.Lock()  # one load at a time
        self._retired: Loaded[E] | None = None
        self._skipped: ModelSource | None = None  # a version that failed to load
        self._stop = threading.Event()
        first = source if view is None else view.source()
        try:
            self._current = self._loaded(first)
        except Exception:
            if first == source:
                raise
            # The alias names a version this process cannot load (removed from its model
            # store, another engine than declared): serve the settings' one meanwhile.
            logger.error(
                "alias %s names %s, which cannot be served; serving %s until it moves",
                view.ref.name if view else "",
                first.reference,
                source.reference,
                exc_info=True,
            )
            self._skipped = first
            self._current = self._loaded(source)

    @property
    def label(self) -> str:
        return self._current.label

    @property
    def versions_held(self) -> int:
        """Versions in memory now: the current one, and one still finishing its calls."""
        with self._lock:
            return 1 + (self._retired is not None)

    @contextlib.contextmanager
    def using(self) -> Iterator[Loaded[E]]:
        """The current version, kept loaded until the ``with`` block ends."""
        with self._lock:
            loaded = self._current
            loaded.calls += 1
        try:
            yield loaded
        finally:
            with self._lock:
                loaded.calls -= 1
                done = loaded is self._retired and loaded.calls == 0
                if done:
                    self._retired = None
            if done:
                _release(loaded)

    def follow(self) -> bool:
        """Look at the alias once; when it names another version, load it and swap it in.
        True when a new version now serves. Nothing changes while the version before the
        current one is still finishing calls (two are held already), nor for a version
        that failed to load (until the alias moves again)."""
        if self._view is None:
            return False
        with self._switching:
            wanted = self._view.source()
            if wanted in (self._current.source, self._skipped):
                return False
            with self._lock:
                if self._retired is not None:
                    return False
            try:
                new = self._loaded(wanted)
            except Exception:
                logger.error(
                    "alias %s moved to %s, which cannot be served; still serving %s",
                    self._view.ref.name,
                    wanted.reference,
                    self._current.label,
                    exc_info=True,
                )
                self._skipped = wanted
                return False
            with self._lock:
                old, self._current = self._current, new
                draining = old.calls > 0
                if draining:
                    self._retired = old
            if not draining:
                _release(old)
            self._skipped = None
            logger.info(
                "alias %s: now serving %s (was %s)", self._view.ref.name, new.label, old.label
            )
            return True

    def start_following(self, interval_s: float) -> None:
        """Call ``follow`` every ``interval_s`` in a background thread until ``close``."""
        if self._view is None:
            return

        def loop() -> None:
            while not self._stop.wait(interval_s):
                try:
                    self.follow()
                except Exception:
                    logger.exception("following alias %s failed", self._view_name)

        threading.Thread(target=loop, name=f"alias-{self._view_name}", daemon=True).start()

    def close(self) -> None:
        self._stop.set()

    @property
    def _view_name(self) -> str:
        return self._view.ref.name if self._view else ""

    def _loaded(self, source: ModelSource) -> Loaded[E]:
        declared = self._view.ref.engine if self._view else None
        if self._view is not None:
            # Checked here too, not only by set_alias: the loading path is the engine's,
            # and a version of another engine would load wrongly or not at all.
            tag = source.store_tag()
            engine = stored_engine(tag) if tag else source.engine
            if engine != source.engine or (declared and engine != declared):
                raise ValueError(
                    f"{source.reference} is a {engine} version; alias "
                    f"{self._view.ref.name} serves {declared or source.engine}"
                )
        engine_obj, label = self._load(source)
        return Loaded(engine_obj, label, source)


def _release(loaded: Loaded[E]) -> None:
    """Free a version no call uses any more: its memory goes back now, not at the next
    collection (a torch model holds ~0.5 GB)."""
    loaded.engine = None  # type: ignore[assignment]
    gc.collect()


@dataclass(frozen=True)
class FollowedAlias:
    """An alias a model service follows: which one, where it is read, how often."""

    ref: AliasRef
    lookup: AliasLookup
    refresh_s: float

    def view(
        self, fallback: ModelSource, refresh_s: float | None = None, *, wait: bool = True
    ) -> AliasView:
        """Its view in this process, ``fallback`` while it names nothing; read again after
        ``refresh_s`` (default: the alias's own); ``wait`` as AliasView's."""
        every = self.refresh_s if refresh_s is None else refresh_s
        return AliasView(self.ref, self.lookup, fallback, every, wait=wait)
