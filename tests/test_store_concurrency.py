"""The store while runs finish: a run whose files change while the store reads them is read again
(its fingerprint is taken before the read), so no finished run is left indexed as "started"."""
import os
import random
import sys
import threading
import time
from pathlib import Path

from lmbudget.results import store as S
from lmbudget.results.store import Store
from lmbudget.sweep.runner import run_sweep

sys.path.insert(0, str(Path(__file__).parent))
from test_results import FakeTrainer, quiet, small_spec  # noqa: E402


def unfinished_sweep(tmp_path, monkeypatch) -> Path:
    """A sweep folder whose runs are all mid-training: each summary.json set aside as summary.json.done."""
    monkeypatch.setattr("lmbudget.runs.train", FakeTrainer())
    out = tmp_path / "out"
    run_sweep(small_spec(), out, log=quiet, update_store=False)
    for d in (out / "runs").iterdir():
        os.replace(d / "summary.json", d / "summary.json.done")
    return out


def statuses(out: Path) -> dict:
    with Store(out) as store:
        return dict(store.db.execute("SELECT run_id, status FROM runs"))


def test_a_run_that_finishes_while_it_is_read_is_indexed_finished(tmp_path, monkeypatch):
    out = unfinished_sweep(tmp_path, monkeypatch)
    read_evals = S.read_evals

    def finishing(run_dir, summary):   # after read_run read summary.json (absent): the run finishes
        if (run_dir / "summary.json.done").exists():
            os.replace(run_dir / "summary.json.done", run_dir / "summary.json")
        return read_evals(run_dir, summary)
    monkeypatch.setattr(S, "read_evals", finishing)
    with Store(out) as store:
        store.update()
        assert store.update()["indexed"] == 0      # stable: nothing left to re-read
    assert set(statuses(out).values()) == {"completed"}


def test_runs_finishing_during_report_indexing_are_all_completed_at_the_end(tmp_path, monkeypatch):
    """A thread finishes the runs one by one at random moments while the store is updated over and over
    (as `lmbudget report` on a live sweep); after the last has finished, one more update has them all."""
    out = unfinished_sweep(tmp_path, monkeypatch)
    dirs = sorted((out / "runs").iterdir())
    rng = random.Random(0)

    def finish():
        for d in dirs:
            time.sleep(rng.uniform(0, 0.02))
            os.replace(d / "summary.json.done", d / "summary.json")
    for _ in range(5):
        for d in dirs:
            if (d / "summary.json").exists():
                os.replace(d / "summary.json", d / "summary.json.done")
        writer = threading.Thread(target=finish)
        writer.start()
        with Store(out) as store:
            while writer.is_alive():
                store.update()
            writer.join()
            store.update()
        assert set(statuses(out).values()) == {"completed"}
