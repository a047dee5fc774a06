"""The frozen-feature probe (``--suite probe``) and kept checkpoints (``train.keep_checkpoints``):
features against a per-example reference (padding masked, mean over tokens), the encoder left untouched,
the classifier against a direct scikit-learn fit, the eval JSON as the results store reads it, caps, a
T5 run, kept weights that a resumed run reproduces and ``--checkpoint`` evaluates, and baselines computed
once per task data."""
import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from lmbudget import checkpoint
from lmbudget.evaluate import EvalError, evaluate, results_path
from lmbudget.evaluate import tasks as T
from lmbudget.evaluate.encoding import tokenize
from lmbudget.evaluate.pretrained import load_run
from lmbudget.evaluate.probe import PROBE_PROTOCOL, C_GRID, features, fit_probe, split_features
from lmbudget.io import read_json
from lmbudget.runs import make_config, train

QUIET = dict(progress=False, log=lambda *_: None)
CAPS = dict(max_train=120, max_eval=60)


def micro(corpus, tmp_path, preset="bert-micro", budget="6 steps", extra=()):
    cfg = make_config(preset, budget=budget, overrides=[f"data.corpus={corpus}", "train.threads=1",
                                                       "train.checkpoint_every=0.5", "train.eval_every=0.5",
                                                       "train.keep_checkpoints=true", *extra])
    train(cfg, tmp_path, **QUIET)
    return tmp_path


@pytest.fixture(scope="module")
def run_dir(corpus, tmp_path_factory):
    return micro(corpus, tmp_path_factory.mktemp("runs") / "bert")


@pytest.fixture(scope="module")
def t5_run_dir(corpus, tmp_path_factory):
    return micro(corpus, tmp_path_factory.mktemp("runs") / "t5", preset="t5-micro", budget="3 steps")


def bbc(max_train=120, max_eval=60):
    return T.cap_task(T.bbc_topic(), max_train, max_eval)


def reference_features(model, tokenizer, texts, length):
    """Each text alone (no padding at all), its final states averaged over its tokens."""
    ids = tokenize(tokenizer, T.Split(texts, None, np.zeros(len(texts))), length)
    with torch.no_grad():
        return np.stack([model.encode(torch.from_numpy(s)[None])[0].mean(0).double().numpy() for s in ids])


@pytest.mark.parametrize("which", ["bert", "t5"])
def test_features_are_mean_pooled_unpadded_states_deterministic_and_frozen(which, run_dir, t5_run_dir):
    run = load_run(run_dir if which == "bert" else t5_run_dir)
    model = run.model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    articles = bbc(24, 8).train.a
    texts = [a.split("\n")[0] for a in articles[:12]] + articles[12:]  # headlines are shorter than the window
    ids = tokenize(run.data.tokenizer, T.Split(texts, None, np.zeros(len(texts))), run.cfg.model.max_seq_len)
    assert len({len(s) for s in ids}) > 1  # batches really are padded
    pad = run.data.special["pad"]
    x = features(model, ids, pad, PROBE_PROTOCOL, "cpu")
    assert x.shape == (len(texts), run.cfg.model.hidden)
    np.testing.assert_allclose(x, reference_features(model.eval(), run.data.tokenizer, texts, run.cfg.model.max_seq_len),
                               rtol=1e-4, atol=1e-5)
    assert np.array_equal(x, features(model, ids, pad, PROBE_PROTOCOL, "cpu"))  # deterministic
    np.testing.assert_allclose(x, features(model, ids, pad, PROBE_PROTOCOL.with_overrides(batch_size=5), "cpu"),
                               rtol=1e-4, atol=1e-5)  # other batches, other padding: the same features
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(p.grad is None for p in model.parameters())


def test_pair_features_are_u_v_product_and_distance(run_dir):
    run = load_run(run_dir)
    model, length, pad = run.model(), run.cfg.model.max_seq_len, run.data.special["pad"]
    split = T.Split(["bank", "run", "tree"], ["a financial institution", "move fast on foot", "a woody plant"],
                    np.array([1, 1, 1]))
    x = split_features(model, run.data.tokenizer, split, pad, PROBE_PROTOCOL, length, "cpu")
    u = reference_features(model.eval(), run.data.tokenizer, split.a, length)
    v = reference_features(model, run.data.tokenizer, split.b, length)
    np.testing.assert_allclose(x, np.hstack([u, v, u * v, np.abs(u - v)]), rtol=1e-4, atol=1e-5)


def test_probe_scores_are_a_direct_sklearn_fit_on_the_same_features(run_dir):
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score
    from sklearn.preprocessing import StandardScaler

    result = evaluate(run_dir, "probe", tasks=["bbc-topic"], **CAPS, **QUIET)
    run, task = load_run(run_dir), bbc()
    model, length = run.model(), run.cfg.model.max_seq_len
    x = {name: reference_features(model.eval(), run.data.tokenizer, split.a, length)
         for name, split in [("train", task.train), *task.evals.items()]}
    scaler = StandardScaler().fit(x["train"])
    best = None
    for c in C_GRID:  # the C with the best dev macro-F1, the first of equals
        fit = LogisticRegression(C=c, solver="newton-cholesky", max_iter=100).fit(scaler.transform(x["train"]),
                                                                                   task.train.labels)
        dev = f1_score(task.evals["dev"].labels, fit.predict(scaler.transform(x["dev"])), average="macro")
        if best is None or dev > best[0]:
            best = (dev, c, fit.predict(scaler.transform(x["test"])))
    _, c, pred = best
    entry = result["tasks"]["bbc-topic"]
    assert entry["C"] == c
    y = task.evals["test"].labels
    assert entry["metrics"]["macro_f1"]["mean"] == pytest.approx(100 * f1_score(y, pred, average="macro"))
    assert entry["metrics"]["accuracy"]["mean"] == pytest.approx(100 * accuracy_score(y, pred))
    # a classifier that saw only one class predicts it (no fit to fail)
    one = bbc()
    one.train = one.train.subset(np.flatnonzero(one.train.labels == 0))
    out = fit_probe(one, {"train": np.zeros((len(one.train), 2)), "dev": np.zeros((60, 2)), "test": np.zeros((60, 2))})
    assert out["bbc-topic"]["C"] is None
    assert out["bbc-topic"]["metrics"]["accuracy"] == pytest.approx(100 * np.mean(one.evals["test"].labels == 0))


def test_probe_json_is_what_the_results_store_reads(run_dir):
    from lmbudget.evaluate.cli import format_result
    from lmbudget.results.store import read_evals

    result = evaluate(run_dir, "probe", tasks=["bbc-topic"], **CAPS, **QUIET)
    saved = read_json(results_path(run_dir, "probe"))
    assert saved == json.loads(json.dumps(result))
    offline = evaluate(run_dir, "offline", tasks=["bbc-topic"], protocol={"epochs": 1, "lr": 1e-3}, **CAPS, **QUIET)
    assert list(saved) == list(offline)  # the same top-level schema, in the same order
    t = saved["tasks"]["bbc-topic"]
    assert set(t) >= set(offline["tasks"]["bbc-topic"]) - {"best_epoch"}
    assert t["main_metric"] == "macro_f1" and set(t["metrics"]) == {"macro_f1", "accuracy"}
    assert t["sizes"] == {"train": 120, "dev": 60, "test": 60}  # the caps
    assert t["baselines"] == offline["tasks"]["bbc-topic"]["baselines"]  # the same splits
    assert saved["protocol"]["kind"] == "frozen-feature probe" and saved["seeds"] == [0]
    assert saved["average"] == t["metrics"]["macro_f1"]["mean"] and set(saved["baselines"]) == {"majority", "tfidf_lr"}
    summary = read_json(run_dir / "summary.json")
    assert summary["eval"]["probe"] == {"average": saved["average"], "tasks": {"bbc-topic": saved["average"]}}
    evals, tasks = read_evals(run_dir, summary)
    assert ("probe", saved["average"], json.dumps(saved["protocol"], sort_keys=True)) in evals
    assert ("probe", "bbc-topic", saved["average"]) in tasks
    assert "probe" in format_result(saved)
    with pytest.raises(EvalError, match="--lr does not apply to the probe suite"):
        evaluate(run_dir, "probe", protocol={"lr": 1e-3}, **QUIET)


def test_t5_probe_uses_encoder_states(t5_run_dir):
    result = evaluate(t5_run_dir, "probe", tasks=["bbc-topic"], **CAPS, **QUIET)
    t = result["tasks"]["bbc-topic"]
    assert result["arch"] == "t5" and t["sizes"] == {"train": 120, "dev": 60, "test": 60}
    assert 0 <= t["metrics"]["macro_f1"]["mean"] <= 100 and set(t["baselines"]) == {"majority", "tfidf_lr"}


def test_t5_encode_masks_padding():
    from lmbudget.models.t5 import T5Model
    from lmbudget.presets import model_config
    torch.manual_seed(0)
    cfg = model_config("t5-micro")
    cfg.vocab_size = 100
    model = T5Model(cfg, pad_id=0).eval()
    ids = torch.randint(5, 100, (2, 10))
    mask = torch.ones_like(ids)
    mask[0, 6:] = 0
    with torch.no_grad():
        padded = model.encode(ids.masked_fill(mask == 0, 0), attention_mask=mask)[0, :6]
        torch.testing.assert_close(padded, model.encode(ids[:1, :6])[0], rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------------------------------ kept checkpoints
def test_kept_checkpoints_resume_to_the_same_weights_and_evaluate_apart(run_dir, corpus, tmp_path, monkeypatch):
    from lmbudget.train import Trainer

    from lmbudget.train import initial_model

    kept = checkpoint.kept(run_dir)
    assert [m["steps"] for _, m in kept] == [0, 3, 6] and [m["fraction"] for _, m in kept] == [0.0, 0.5, 1.0]
    summary = read_json(run_dir / "summary.json")
    assert kept[-1][1]["last_val_loss"] == summary["final_val_loss"] and kept[0][1]["last_val_loss"] > 0
    final = load_file(str(checkpoint.latest(run_dir) / "model.safetensors"))
    last, middle, first = (load_file(str(p / "model.safetensors")) for p, _ in (kept[-1], kept[1], kept[0]))
    assert all(torch.equal(final[k], last[k]) for k in final) and not all(torch.equal(final[k], middle[k]) for k in final)
    run = load_run(run_dir)
    start = initial_model(run.cfg, run.data.special).state_dict()  # step 0 is the untrained model
    assert set(first) == set(start) and all(torch.equal(first[k], start[k]) for k in first)
    assert sorted(p.name for p in checkpoint.folder(run_dir).iterdir() if p.is_dir()) == sorted(
        [checkpoint.latest(run_dir).name, "kept"])  # older full checkpoints are still pruned

    # killed after the first kept checkpoint, resumed: the same kept weights
    class Interrupt(Exception):
        pass
    original = Trainer.after_step

    def after_step(self, loss):
        original(self, loss)
        if self.clock.steps == 4:
            raise Interrupt
    cut = tmp_path / "cut"
    with monkeypatch.context() as m:
        m.setattr(Trainer, "after_step", after_step)
        with pytest.raises(Interrupt):
            micro(corpus, cut)
    cfg = make_config("bert-micro", budget="6 steps", overrides=[f"data.corpus={corpus}", "train.threads=1",
                                                                 "train.checkpoint_every=0.5", "train.eval_every=0.5",
                                                                 "train.keep_checkpoints=true"])
    train(cfg, cut, resume=True, **QUIET)
    again = checkpoint.kept(cut)
    assert [m for _, m in again] == [m for _, m in kept]
    for (a, _), (b, _) in zip(kept, again):
        wa, wb = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
        assert max((wa[k] - wb[k]).abs().max().item() for k in wa) < 1e-5

    # --checkpoint: results beside the kept weights, the run's own results and summary untouched
    summary_before = (run_dir / "summary.json").read_text()
    early = evaluate(run_dir, "probe", tasks=["bbc-topic"], checkpoint=kept[1][0].name, **CAPS, **QUIET)
    assert early["checkpoint"] == "step-00000003"
    assert read_json(kept[1][0] / "eval" / "probe.json") == json.loads(json.dumps(early))
    assert (run_dir / "summary.json").read_text() == summary_before
    with pytest.raises(EvalError, match="keeps no checkpoint 'step-9'.*step-00000000, step-00000003, step-00000006"):
        evaluate(run_dir, "probe", checkpoint="step-9", **QUIET)


def test_baselines_are_computed_once_per_task_data(monkeypatch):
    from lmbudget.evaluate import baselines as B
    real, calls = B.tfidf_linear, []
    monkeypatch.setattr(B, "tfidf_linear", lambda task: calls.append(task.name) or real(task))
    monkeypatch.setattr(B, "_computed", {})
    task = bbc(60, 30)
    direct = {"bbc-topic": {"majority": B.majority(task)["bbc-topic"], "tfidf_lr": real(task)["bbc-topic"]}}
    first = B.baselines(task)
    assert first == direct
    first["bbc-topic"]["majority"]["accuracy"] = -1.0  # a caller's edit does not reach the cache
    assert B.baselines(bbc(60, 30)) == direct and len(calls) == 1
    other = bbc(60, 30)
    other.train.labels = np.random.default_rng(0).permutation(other.train.labels)
    B.baselines(other)
    assert len(calls) == 2  # other labels: computed again


def test_last_pooling_reads_each_rows_last_unpadded_state_whichever_side_pads():
    from lmbudget.evaluate.encoding import pool
    hidden = torch.arange(2 * 4 * 3, dtype=torch.float32).reshape(2, 4, 3)
    right = torch.tensor([[True, True, False, False], [True, True, True, True]])
    left = torch.tensor([[False, False, True, True], [False, True, True, True]])
    assert torch.equal(pool(hidden, right, "last"), torch.stack([hidden[0, 1], hidden[1, 3]]))
    assert torch.equal(pool(hidden, left, "last"), torch.stack([hidden[0, 3], hidden[1, 3]]))
    assert not torch.equal(pool(hidden, right, "last"), pool(hidden, right, "mean"))
