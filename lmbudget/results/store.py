"""The results store: one SQLite file per sweep folder indexing every run directory's files.

The run directories stay the source of truth; the store is a cache of them that can always be
rebuilt (``lmbudget report DIR --rebuild``). It is updated incrementally: a run is re-read only
when one of its files changed (size or modification time), so ``report`` over thousands of runs
stats files instead of parsing them. Paths are stored relative to the sweep folder, so the folder
can be moved.

Schema (``results.sqlite``)::

    runs(run_id PK, path, model, config, algorithm, optimizer, budget, budget_kind, budget_value,
         seed, reference, status, error, rst_s, wall_s, steps, tokens, final_val_loss,
         final_train_loss, trials, unigram_entropy, final_test_loss, final_test_loss_se, test_targets,
         stem, fork_rst_s, config_json, summary_json, fingerprint)
    metrics(run_id, line, step, rst_s, wall_s, tokens, lr, train_loss, val_loss, final, extra_json)
    rst_breakdown(run_id, tag, rst_s, free_rst_s, units)
    evals(run_id, suite, average, protocol_json)
    eval_tasks(run_id, suite, task, score)

``status`` is the summary's (completed, diverged), else ``failed`` (failed.json, no summary),
``started`` or ``empty``. ``config`` is the table row's label (``baseline+adamw``). ``trials`` is the
number of tuning trials the configuration's hyper-parameters came from (the sweep's coordinates;
NULL: untuned defaults); ``unigram_entropy`` the summary's (nats: the validation loss of predicting
training-set token frequencies). ``final_test_loss`` (mean per-token loss on the test split, which
tuning never sees), its standard error ``final_test_loss_se`` and ``test_targets`` (the number of
targets it averages) are the summary's, NULL for runs that did not measure it. ``stem`` and
``fork_rst_s``: a wsd-branches branch's stem (its run directory's name) and the RST at which it forked
from it (the share of its ``rst_s`` the stem paid), NULL for other runs. ``protocol_json`` is the suite's protocol (``eval/<suite>.json``).
A store of an older schema is rebuilt from the run directories when opened. Example queries::

    -- mean final validation loss per configuration and budget
    SELECT model, config, budget, COUNT(*) AS n, AVG(final_val_loss)
      FROM runs WHERE status = 'completed' GROUP BY model, config, budget ORDER BY budget_value, config;
    -- a config value of every run (SQLite's JSON functions read the stored config.yaml)
    SELECT run_id, json_extract(config_json, '$.optim.lr') AS lr FROM runs;
    -- the validation curve of one run
    SELECT rst_s, val_loss FROM metrics WHERE run_id = ? AND val_loss IS NOT NULL ORDER BY line;
    -- GLUE average per configuration at each budget
    SELECT r.config, r.budget, AVG(e.average) FROM evals e JOIN runs r USING (run_id)
     WHERE e.suite = 'glue' GROUP BY r.config, r.budget;
"""
from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import yaml

STORE_NAME = "results.sqlite"
SCHEMA_VERSION = "4"   # a store with another version is rebuilt on opening
COORDS = "sweep-run.json"   # written by the sweep into each run directory: its grid coordinates
FAILED = "failed.json"      # written when a run's training or evaluation raised
SKIP_DIRS = {"checkpoints", "eval", "tensorboard", "wandb", "plots", "tables"}
READ_TRIES = 3   # reads of a run whose files change while they are read, before leaving it to the next update
METRIC_COLUMNS = ("step", "rst_s", "wall_s", "tokens", "lr", "train_loss", "val_loss")

SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE runs (
    run_id TEXT PRIMARY KEY, path TEXT NOT NULL,
    model TEXT, config TEXT, algorithm TEXT, optimizer TEXT,
    budget TEXT, budget_kind TEXT, budget_value REAL, seed INTEGER, reference TEXT,
    status TEXT NOT NULL, error TEXT,
    rst_s REAL, wall_s REAL, steps INTEGER, tokens INTEGER, final_val_loss REAL, final_train_loss REAL,
    trials INTEGER, unigram_entropy REAL, final_test_loss REAL, final_test_loss_se REAL, test_targets INTEGER,
    stem TEXT, fork_rst_s REAL, config_json TEXT, summary_json TEXT, fingerprint TEXT NOT NULL);
CREATE TABLE metrics (
    run_id TEXT NOT NULL, line INTEGER NOT NULL, step INTEGER, rst_s REAL, wall_s REAL, tokens INTEGER,
    lr REAL, train_loss REAL, val_loss REAL, final INTEGER, extra_json TEXT, PRIMARY KEY (run_id, line));
CREATE TABLE rst_breakdown (
    run_id TEXT NOT NULL, tag TEXT NOT NULL, rst_s REAL, free_rst_s REAL, units REAL, PRIMARY KEY (run_id, tag));
CREATE TABLE evals (
    run_id TEXT NOT NULL, suite TEXT NOT NULL, average REAL, protocol_json TEXT, PRIMARY KEY (run_id, suite));
CREATE TABLE eval_tasks (
    run_id TEXT NOT NULL, suite TEXT NOT NULL, task TEXT NOT NULL, score REAL, PRIMARY KEY (run_id, suite, task));
CREATE INDEX runs_cell ON runs (model, config, budget);
"""
TABLES = ("runs", "metrics", "rst_breakdown", "evals", "eval_tasks")


def is_run_dir(path: Path) -> bool:
    return (path / "config.yaml").is_file() or (path / COORDS).is_file()


def find_run_dirs(root: Path) -> list[Path]:
    """Every run directory under ``root`` (not descending into checkpoints and the like), sorted."""
    root = Path(root)
    found = []
    for dirpath, dirnames, _ in os.walk(root):
        here = Path(dirpath)
        if here != root and is_run_dir(here):
            found.append(here)
            dirnames.clear()  # run directories do not nest
            continue
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS and not d.startswith("."))
    return sorted(found)


def source_files(run_dir: Path) -> list[Path]:
    names = [COORDS, FAILED, "config.yaml", "summary.json", "metrics.jsonl"]
    files = [run_dir / n for n in names]
    if (run_dir / "eval").is_dir():
        files += sorted((run_dir / "eval").glob("*.json"))
    return files


def fingerprint(run_dir: Path) -> str:
    """What changed-detection compares: name, size and mtime of each file the index reads."""
    parts = []
    for f in source_files(run_dir):
        try:
            st = f.stat()
            parts.append(f"{f.name}:{st.st_size}:{st.st_mtime_ns}")
        except FileNotFoundError:
            pass
    return "|".join(parts)


def _json(path: Path):
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None  # absent, or being written by a live run: indexed as what is there


def _num(value):
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def read_run(run_dir: Path, root: Path, before: str | None = None) -> dict:
    """Everything the store keeps about one run directory, as rows per table. Its fingerprint is the one
    taken before the files are read (``before``, or now): a file that changes during the read makes it
    differ from the files' (see Store.index_run)."""
    from lmbudget.clock import ClockError, parse_budget

    before = fingerprint(run_dir) if before is None else before
    run_id = run_dir.relative_to(root).as_posix()
    coords = _json(run_dir / COORDS) or {}
    failed = _json(run_dir / FAILED)
    summary = _json(run_dir / "summary.json")
    config = None
    if (run_dir / "config.yaml").is_file():
        config = yaml.safe_load((run_dir / "config.yaml").read_text())
    cfg = config or {}
    algorithm = coords.get("algorithm") or cfg.get("algorithm") or (summary or {}).get("algorithm")
    optimizer = coords.get("optimizer") or cfg.get("optim", {}).get("name") or (summary or {}).get("optimizer")
    budget = coords.get("budget") or cfg.get("train", {}).get("budget")
    try:
        b = parse_budget(budget)
        budget_kind, budget_value = b.kind, b.value
    except (ClockError, TypeError):
        budget_kind, budget_value = None, None
    seed = coords.get("seed", cfg.get("train", {}).get("seed"))
    if summary:
        status = summary.get("status", "unknown")
    elif failed:
        status = "failed"
    else:
        status = "started" if config else "empty"

    lines = []
    if (run_dir / "metrics.jsonl").is_file():
        for raw in (run_dir / "metrics.jsonl").read_text().splitlines():
            try:
                lines.append(json.loads(raw))
            except ValueError:
                break  # a line cut by a kill: the run is unfinished and will rewrite it
    metrics = []
    for i, line in enumerate(lines):
        extra = {k: v for k, v in line.items() if k not in METRIC_COLUMNS and k != "final"}
        metrics.append((run_id, i, *(_num(line.get(k)) for k in METRIC_COLUMNS), int(bool(line.get("final"))),
                        json.dumps(extra, sort_keys=True) if extra else None))
    train_losses = [line["train_loss"] for line in lines if _num(line.get("train_loss")) is not None]

    s = summary or {}
    breakdown = [(run_id, tag, _num(e.get("rst_s")), _num(e.get("free_rst_s")), _num(e.get("units")))
                 for tag, e in sorted((s.get("rst_breakdown") or {}).items())]
    evals, tasks = read_evals(run_dir, s)
    error = None
    if failed:
        error = f"{failed.get('stage', 'train')}: {failed.get('error', '')}".strip()
    run = (run_id, run_id, coords.get("model") or cfg.get("model_name") or s.get("model"),
           coords.get("config") or f"{algorithm}+{optimizer}", algorithm, optimizer, budget, budget_kind,
           budget_value, seed, coords.get("reference") or s.get("reference") or cfg.get("train", {}).get("reference"),
           status, error, _num(s.get("rst_s")), _num(s.get("wall_s")), _num(s.get("steps")), _num(s.get("tokens")),
           _num(s.get("final_val_loss")), train_losses[-1] if train_losses else None,
           _num(coords.get("trials")), _num(s.get("unigram_entropy")), _num(s.get("final_test_loss")),
           _num(s.get("final_test_loss_se")), _num(s.get("test_targets")),
           (s.get("branch") or {}).get("stem"), _num((s.get("branch") or {}).get("fork_rst_s")),
           json.dumps(config, sort_keys=True) if config is not None else None,
           json.dumps(summary, sort_keys=True) if summary is not None else None, before)
    return {"runs": [run], "metrics": metrics, "rst_breakdown": breakdown,
            "evals": [(run_id, suite, avg, protocol) for suite, avg, protocol in evals],
            "eval_tasks": [(run_id, suite, task, score) for suite, task, score in tasks]}


def read_evals(run_dir: Path, summary: dict) -> tuple[list, list]:
    """Suite averages (with the suite's protocol, which only eval/<suite>.json holds) and task
    scores: summary.json's "eval", completed by eval/<suite>.json files (written first by the
    evaluator, so they count even if the summary was not updated yet)."""
    entries = dict(summary.get("eval") or {})
    protocols = {}
    if (run_dir / "eval").is_dir():
        for f in sorted((run_dir / "eval").glob("*.json")):
            data = _json(f)
            if isinstance(data, dict):
                entries.setdefault(f.stem, data)
                if data.get("protocol") is not None:
                    protocols[f.stem] = json.dumps(data["protocol"], sort_keys=True)
    evals, tasks = [], []
    for suite in sorted(entries):
        e = entries[suite]
        if not isinstance(e, dict):
            continue
        evals.append((suite, _num(e.get("average")), protocols.get(suite)))
        for task, score in sorted((e.get("tasks") or {}).items()):
            if isinstance(score, dict):  # eval/<suite>.json: {"main_metric": m, "metrics": {m: {"mean": ...}}}
                score = (score.get("metrics") or {}).get(score.get("main_metric"), {}).get("mean")
            tasks.append((suite, task, _num(score)))
    return evals, tasks


class Store:
    """``with Store(sweep_dir) as store: store.update()``; then query ``store.db``."""

    def __init__(self, root: Path, path: Path | None = None):
        self.root = Path(root)
        self.path = Path(path) if path else self.root / STORE_NAME
        self.root.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path)
        self.db.execute("PRAGMA foreign_keys = OFF")
        version = None
        try:
            version = self.db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        except sqlite3.OperationalError:
            pass
        if version is None or version[0] != SCHEMA_VERSION:
            self.create()

    def create(self) -> None:
        """(Re)create the empty schema; an old or foreign schema is dropped (the run dirs are the truth)."""
        with self.db:
            for table in (*TABLES, "meta"):
                self.db.execute(f"DROP TABLE IF EXISTS {table}")
            self.db.executescript(SCHEMA)
            self.db.execute("INSERT INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def index_run(self, run_dir: Path) -> None:
        """Replace one run's rows in one transaction (a kill mid-way leaves the old rows). A run whose
        files changed while they were read (it finished meanwhile) is read again; if it keeps changing,
        the fingerprint stored is the one from before the read, so the next update reads it again."""
        for _ in range(READ_TRIES):
            before = fingerprint(run_dir)
            rows = read_run(Path(run_dir), self.root, before)
            if fingerprint(run_dir) == before:
                break
        run_id = rows["runs"][0][0]
        with self.db:
            self._delete(run_id)
            for table, values in rows.items():
                if values:
                    marks = ",".join("?" * len(values[0]))
                    self.db.executemany(f"INSERT INTO {table} VALUES ({marks})", values)

    def _delete(self, run_id: str) -> None:
        for table in TABLES:
            self.db.execute(f"DELETE FROM {table} WHERE run_id = ?", (run_id,))

    def update(self) -> dict:
        """Index new and changed run directories, drop vanished ones. Returns counts."""
        known = dict(self.db.execute("SELECT run_id, fingerprint FROM runs"))
        present, changed = set(), 0
        for run_dir in find_run_dirs(self.root):
            run_id = run_dir.relative_to(self.root).as_posix()
            present.add(run_id)
            if known.get(run_id) != fingerprint(run_dir):
                self.index_run(run_dir)
                changed += 1
        gone = set(known) - present
        with self.db:
            for run_id in gone:
                self._delete(run_id)
        return {"runs": len(present), "indexed": changed, "removed": len(gone)}

    def rebuild(self) -> dict:
        self.create()
        return self.update()

    def dump(self) -> dict[str, list[tuple]]:
        """Every table's rows in a fixed order (for comparisons and exports)."""
        return {t: sorted(self.db.execute(f"SELECT * FROM {t}").fetchall(), key=repr) for t in TABLES}

    def query(self, sql: str, params=()) -> list[sqlite3.Row]:
        self.db.row_factory = sqlite3.Row
        try:
            return self.db.execute(sql, params).fetchall()
        finally:
            self.db.row_factory = None
