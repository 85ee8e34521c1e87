"""The run store: one SQLite file (standard library, WAL mode), one row per run.

A run's key is ``(spec_hash, config_id, seed)``. Rows are written only by the client, a
task's rows in one transaction, so a killed census loses at most the tasks in flight and
never leaves half a row; :meth:`RunStore.done` gives the keys to skip on resume.
:meth:`RunStore.adopt` lets a changed spec keep the runs it shares with an earlier one.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Iterator

from .._checks import ValidationError
from .row import ROW_FIELDS, column_type

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS runs ("
    + ", ".join(f"{f} {column_type(f)}" for f in ROW_FIELDS)
    + ", PRIMARY KEY (spec_hash, config_id, seed))"
)


class RunStore:
    """A census run store at ``path`` (created if missing)."""

    def __init__(self, path: str | Path, *, create: bool = True):
        self.path = Path(path)
        if not create and not self.path.is_file():
            raise ValidationError(f"The 'store' file must exist. Got {str(self.path)!r}, which is not a file.")
        if not self.path.parent.is_dir():
            raise ValidationError(f"The 'store' path {str(self.path)!r} is in a folder that does not exist: "
                                  f"create {str(self.path.parent)!r} first.")
        try:
            self.conn = sqlite3.connect(self.path, timeout=60)
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")
            with self.conn:
                self.conn.execute(_SCHEMA)
                have = {r[1] for r in self.conn.execute("PRAGMA table_info(runs)")}
                for f in ROW_FIELDS:  # a store written by an older resland gains the new columns
                    if f not in have:
                        self.conn.execute(f"ALTER TABLE runs ADD COLUMN {f} {column_type(f)}")
                self.conn.execute("CREATE TABLE IF NOT EXISTS specs (spec_hash TEXT PRIMARY KEY, name TEXT, "
                                  "spec TEXT, n_runs INTEGER)")
        except sqlite3.DatabaseError as exc:
            raise ValidationError(f"The 'store' file {str(self.path)!r} is not a resland SQLite store: {exc}.") from None

    def add_spec(self, spec) -> None:
        with self.conn:
            self.conn.execute("INSERT OR IGNORE INTO specs VALUES (?, ?, ?, ?)",
                              (spec.spec_hash, spec.name, json.dumps(spec.canonical(), sort_keys=True), spec.n_runs))

    def adopt(self, spec) -> int:
        """Copy into ``spec`` the runs it shares with other specs of this store; returns rows added.

        A stored run is ``spec``'s when its ``(config_id, seed)`` is a run of ``spec`` and its
        spec computes runs alike: the same :func:`~resland.census.spec.run_settings` (engine,
        batch size, default seeds, ``[finder]``, ``[store]``). A config's id covers the config
        and its own seeds, so the run's task, and hence its bits, are the same. A grown or cut
        grid keeps what is done; the copies carry ``spec``'s hash.
        """
        from .spec import config_id, run_settings

        settings, own = run_settings(spec.canonical()), spec.spec_hash
        wanted = {(config_id(c), s) for c in spec.configs for s in spec.seeds_of(c)} - self.done(own)
        donors = [d["spec_hash"] for d in self.specs() if d["spec_hash"] != own and run_settings(d["spec"]) == settings]
        rows = [dict(r, spec_hash=own) for h in donors for r in self.rows(h) if (r["config_id"], r["seed"]) in wanted]
        self.add_spec(spec)
        return self.write(rows) if rows else 0

    def done(self, spec_hash: str) -> set[tuple[str, int]]:
        """``(config_id, seed)`` of the runs of ``spec_hash`` already stored."""
        cur = self.conn.execute("SELECT config_id, seed FROM runs WHERE spec_hash = ?", (spec_hash,))
        return {(c, int(s)) for c, s in cur}

    def write(self, rows: list[dict]) -> int:
        """Insert a task's rows in one transaction; a key already present is kept (returns rows added)."""
        sql = f"INSERT OR IGNORE INTO runs ({', '.join(ROW_FIELDS)}) VALUES ({', '.join('?' * len(ROW_FIELDS))})"
        with self.conn:
            cur = self.conn.executemany(sql, [tuple(r[f] for f in ROW_FIELDS) for r in rows])
        return cur.rowcount

    def rows(self, spec_hash: str | None = None) -> Iterator[dict]:
        """Stored rows (all specs, or one), in key order, streamed from the database."""
        sql = f"SELECT {', '.join(ROW_FIELDS)} FROM runs"
        args: tuple = ()
        if spec_hash:
            sql, args = sql + " WHERE spec_hash = ?", (spec_hash,)
        for rec in self.conn.execute(sql + " ORDER BY spec_hash, config_id, seed", args):
            yield dict(zip(ROW_FIELDS, rec))

    def run(self, config_id: str, seed: int) -> dict | None:
        """The stored row of run ``config_id:seed`` (the first spec that has it), or None."""
        rec = self.conn.execute(f"SELECT {', '.join(ROW_FIELDS)} FROM runs WHERE config_id = ? AND seed = ? "
                                "ORDER BY spec_hash LIMIT 1", (config_id, int(seed))).fetchone()
        return None if rec is None else dict(zip(ROW_FIELDS, rec))

    def count(self) -> int:
        return self.conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0]

    def specs(self) -> list[dict]:
        return [{"spec_hash": h, "name": n, "spec": json.loads(s), "n_runs": k}
                for h, n, s, k in self.conn.execute("SELECT spec_hash, name, spec, n_runs FROM specs")]

    def close(self) -> None:
        self.conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
