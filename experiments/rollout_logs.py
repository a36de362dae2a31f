"""The log an experiment's changes are kept in (experiments/rollouts.py reads the runs
from it): SQLite in the data dir, or Redis (every replica). Both append atomically when
asked to append only after a given change, and start the variants file's run once."""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from typing import Any

from experiments.rollouts import START, Change
from experiments.stores import RedisStore, SqliteStore


class SqliteRolloutLog(SqliteStore):
    SCHEMA = (
        "CREATE TABLE IF NOT EXISTS rollout_changes (seq INTEGER PRIMARY KEY "
        "AUTOINCREMENT, experiment TEXT NOT NULL, change TEXT NOT NULL)"
    )

    def append(self, experiment: str, change: Change, after: float | None = None) -> bool:
        with self._file.connect() as db:
            if after is not None:
                db.execute("BEGIN IMMEDIATE")  # the check and the write as one
                newest = db.execute(
                    "SELECT change FROM rollout_changes WHERE experiment = ? "
                    "ORDER BY seq DESC LIMIT 1",
                    (experiment,),
                ).fetchone()
                if newest is None or Change.from_json(newest[0]).at != after:
                    return False
            db.execute(
                "INSERT INTO rollout_changes (experiment, change) VALUES (?, ?)",
                (experiment, json.dumps(asdict(change))),
            )
        return True

    def history(self, experiment: str) -> list[Change]:
        with self._file.connect() as db:
            rows = db.execute(
                "SELECT change FROM rollout_changes WHERE experiment = ? ORDER BY seq",
                (experiment,),
            ).fetchall()
        return [Change.from_json(raw) for (raw,) in rows]

    def start_once(self, experiment: str, change: Change) -> None:
        with self._file.connect() as db:
            # IMMEDIATE: two processes starting at once cannot both see "not started".
            db.execute("BEGIN IMMEDIATE")
            rows = db.execute(
                "SELECT change FROM rollout_changes WHERE experiment = ? ORDER BY seq DESC",
                (experiment,),
            ).fetchall()
            signed = [c for c in (Change.from_json(raw) for (raw,) in rows) if c.signature]
            if signed and signed[0].signature == change.signature:
                return
            starts = sum(Change.from_json(raw).event == START for (raw,) in rows)
            numbered = replace(change, experiment_id=f"{experiment}-{starts + 1}")
            db.execute(
                "INSERT INTO rollout_changes (experiment, change) VALUES (?, ?)",
                (experiment, json.dumps(asdict(numbered))),
            )


# Append ARGV[1] (a START with signature ARGV[2]) unless the newest signed entry has that
# signature; the run number is the count of starts + 1 (ARGV[3]: the id's prefix). One
# script, so replicas starting at once cannot both start the file's run.
_START_ONCE = """
local entries = redis.call('LRANGE', KEYS[1], 0, -1)
local starts = 0
local newest = nil
for i = 1, #entries do
  local entry = cjson.decode(entries[i])
  if entry['event'] == 'start' then starts = starts + 1 end
  if type(entry['signature']) == 'string' then newest = entry['signature'] end
end
if newest == ARGV[2] then return 0 end
local change = cjson.decode(ARGV[1])
change['experiment_id'] = ARGV[3] .. '-' .. tostring(starts + 1)
redis.call('RPUSH', KEYS[1], cjson.encode(change))
return 1
"""


# RPUSH ARGV[1] only while the newest entry was made at ARGV[2] (a number).
_APPEND_AFTER = """
local newest = redis.call('LINDEX', KEYS[1], -1)
if not newest or cjson.decode(newest)['at'] ~= tonumber(ARGV[2]) then return 0 end
redis.call('RPUSH', KEYS[1], ARGV[1])
return 1
"""


class RedisRolloutLog(RedisStore):
    def __init__(self, url: str, *args: Any, **kwargs: Any) -> None:
        super().__init__(url, *args, **kwargs)
        self._start_once = self._redis.register_script(_START_ONCE)
        self._append_after = self._redis.register_script(_APPEND_AFTER)

    def append(self, experiment: str, change: Change, after: float | None = None) -> bool:
        key, raw = self._key("rollout", experiment), json.dumps(asdict(change))
        if after is None:
            self._redis.rpush(key, raw)
            return True
        return bool(self._append_after(keys=[key], args=[raw, repr(after)]))

    def history(self, experiment: str) -> list[Change]:
        raw = self._redis.lrange(self._key("rollout", experiment), 0, -1)
        return [Change.from_json(entry) for entry in raw]

    def start_once(self, experiment: str, change: Change) -> None:
        self._start_once(
            keys=[self._key("rollout", experiment)],
            args=[json.dumps(asdict(change)), change.signature or "", experiment],
        )
