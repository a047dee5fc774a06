"""Evaluation: metrics against hand computations, the offline tasks' splits, the fine-tuning harness
(learns a real task, and scores at chance on shuffled labels), GLUE from local files and its missing-data
error, fixed-mask validation loss, T5 greedy generation, and the eval JSON / summary.json shapes."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from lmbudget.evaluate import EvalDataError, EvalError, evaluate, merge_summary, results_path
from lmbudget.evaluate import metrics as M
from lmbudget.evaluate import tasks as T
from lmbudget.evaluate.finetune import Protocol, run_task
from lmbudget.evaluate.pretrained import load_run
from lmbudget.io import read_json

FAST = {"lr": 1e-3, "epochs": 1}  # a random-ish bert-micro needs a larger rate than the paper's 4e-5


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        path = tmp_path_factory.mktemp("lmbudget-home")
        mp.setenv("LMBUDGET_HOME", str(path))
        yield path


@pytest.fixture(scope="module")
def run_dir(home, tmp_path_factory):
    """bert-micro trained 3 steps on pre-training BBC articles (never reserved ones), two sources."""
    from lmbudget.data import bbc_articles
    from lmbudget.runs import make_config, train
    corpus = tmp_path_factory.mktemp("corpus")
    for label in ("business", "sports"):
        (corpus / label).mkdir()
        for a in [a for a in bbc_articles() if not a["reserved"] and a["label"] == label][:80]:
            (corpus / label / f"{a['id'].replace('/', '_')}.txt").write_text(a["headline"] + "\n\n" + a["body"])
    cfg = make_config("bert-micro", budget="3 steps", overrides=[f"data.corpus={corpus}", "train.threads=1",
                                                                 "data.validation_fraction=0.1"])
    out = tmp_path_factory.mktemp("runs") / "micro"
    train(cfg, out, progress=False, log=lambda *_: None)
    return out


# ------------------------------------------------------------------------------------------ metrics
def test_metrics_against_hand_computations():
    pred, ref = [1, 1, 0, 0, 1], [1, 0, 0, 0, 1]           # TP 2, FP 1, TN 2, FN 0
    assert M.accuracy(pred, ref) == pytest.approx(80.0)
    assert M.f1(pred, ref) == pytest.approx(100 * 2 * 2 / (2 * 2 + 1 + 0))
    assert M.mcc(pred, ref) == pytest.approx(100 * (2 * 2 - 1 * 0) / np.sqrt(3 * 2 * 2 * 3))
    assert M.mcc([1, 1, 1], [0, 1, 1]) == 0.0             # constant prediction: undefined, reported as 0
    # three classes: F1 per class 1, 1/2, 1/2
    assert M.macro_f1([0, 1, 2, 2, 1], [0, 1, 1, 2, 2]) == pytest.approx(100 * 2 / 3)
    assert M.pearson([1, 2, 3, 4], [2, 4, 5, 9]) == pytest.approx(100 * 11 / np.sqrt(5 * 26))
    assert M.spearman([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(80.0)
    # LCS("the cat sat on the mat", "the cat is on the mat") = 5 words of 6 each side
    assert M.rouge_l(["the cat sat on the mat"], ["the cat is on the mat"]) == pytest.approx(100 * 5 / 6)
    assert M.rouge_l_multi(["a b c"], [["x y", "a b c"]]) == pytest.approx(100.0)
    assert M.group_exact_match([1, 0, 1, 1], [1, 0, 0, 1], [0, 0, 1, 1]) == pytest.approx(50.0)
    from sklearn.metrics import f1_score, matthews_corrcoef
    rng = np.random.default_rng(0)
    p, r = rng.integers(0, 3, 200), rng.integers(0, 3, 200)
    assert M.mcc(p, r) == pytest.approx(100 * matthews_corrcoef(r, p))
    assert M.macro_f1(p, r) == pytest.approx(100 * f1_score(r, p, average="macro"))


# ------------------------------------------------------------------------------------------ offline tasks
def pairs(split):
    return list(zip(split.a, split.b or [None] * len(split)))


@pytest.mark.parametrize("name", list(T.OFFLINE))
def test_offline_splits_are_disjoint_and_deterministic(name):
    task = T.OFFLINE[name]()
    if task is None:
        pytest.skip(f"{name}: data not installed")
    again = T.OFFLINE[name]()
    splits = {"train": task.train, **task.evals}
    for k, split in splits.items():
        other = {"train": again.train, **again.evals}[k]
        assert pairs(split) == pairs(other) and (split.labels == other.labels).all()
    if name == "wordnet-gloss":  # units are synsets: their (positive) definitions never cross splits
        units = {k: {b for b, y in zip(s.b, s.labels) if y == 1} for k, s in splits.items()}
        assert all((s.labels == 1).mean() == 0.5 for s in splits.values())
    else:
        units = {k: set(s.a) for k, s in splits.items()}
    assert not (units["train"] & units["dev"]) and not (units["train"] & units["test"]) and not (units["dev"] & units["test"])
    assert len(task.label_names) == task.n_labels and set(np.unique(task.evals["test"].labels)) == set(range(task.n_labels))


def test_bbc_tasks_use_only_reserved_articles_without_duplicates():
    from lmbudget.data import bbc_articles
    from lmbudget.evaluate.seq2seq_tasks import bbc_headline

    def norm(text):
        return " ".join(text.lower().split())
    articles = bbc_articles()
    pretraining = {norm(a["body"]) for a in articles if not a["reserved"]}
    used = T.reserved_bbc()
    assert all(a["reserved"] for a in used) and not {norm(a["body"]) for a in used} & pretraining
    assert len({norm(a["body"]) for a in used}) == len(used) > 900
    topic = T.bbc_topic()
    texts = topic.train.a + topic.evals["dev"].a + topic.evals["test"].a
    assert sorted(texts) == sorted(f"{a['headline']}\n{a['body']}" for a in used)
    headline = bbc_headline()
    bodies = [s for s, _ in headline.train] + [s for e in headline.evals.values() for s in e.sources]
    assert sorted(bodies) == sorted(f"headline: {a['body']}" for a in used)


# ------------------------------------------------------------------------------------------ the harness
def test_masked_encoding_ignores_padding(run_dir):
    model = load_run(run_dir).model().eval()
    ids = torch.randint(5, 100, (2, 12))
    full = torch.ones_like(ids, dtype=torch.bool)
    with torch.no_grad():
        assert torch.equal(model.encode(ids, attention_mask=full), model.encode(ids))
        mask = full.clone()
        mask[0, 8:] = False
        padded = model.encode(ids.masked_fill(~mask, 0), attention_mask=mask)[0, :8]
        torch.testing.assert_close(padded, model.encode(ids[:1, :8])[0], rtol=1e-5, atol=1e-5)


def test_finetuned_bert_beats_majority_and_shuffled_labels_score_at_chance(run_dir):
    """The real harness on a real task: BBC topic (5 classes) is learnable even from a weak encoder;
    with the training labels permuted, the test split must be at chance (no leakage between splits)."""
    run = load_run(run_dir)
    task = T.bbc_topic()
    protocol = Protocol(lr=3e-3, epochs=3)

    def test_accuracy(task):
        out = run_task(lambda: run.model(), task, run.data.tokenizer, protocol, [0], run.data.special["pad"], "cpu",
                       run.cfg.model.max_seq_len, progress=False)
        return out["bbc-topic"][0]["metrics"]["accuracy"]

    majority = 100 * np.mean(task.evals["test"].labels == np.bincount(task.train.labels).argmax())
    learned = test_accuracy(task)
    assert learned > majority + 20, (learned, majority)
    task.train.labels = np.random.default_rng(0).permutation(task.train.labels)
    shuffled = test_accuracy(task)
    assert shuffled < majority + 10, (shuffled, majority)   # 5 classes: chance is 20-23%


def test_test_split_scored_once_at_the_selected_epoch_equals_scoring_it_every_epoch(run_dir):
    """The test split is scored only on the weights kept from the dev-selected epoch; a copy of it
    that is scored every epoch (as a selection split of another entry) must report the same."""
    import dataclasses
    run = load_run(run_dir)
    task = T.cap_task(T.bbc_topic(), 120, 60)
    test_copy = dataclasses.replace(task.evals["test"])
    task.evals["test_copy"] = test_copy
    # dev labels shuffled: the dev-selected epoch is then not simply the last one, which a stale snapshot would pass
    task.evals["dev"].labels = np.random.default_rng(1).permutation(task.evals["dev"].labels)
    task.report = {"bbc-topic": ("dev", "test"), "every-epoch": ("dev", "test_copy"), "scored": ("test_copy", "test_copy")}
    out = run_task(lambda: run.model(), task, run.data.tokenizer, Protocol(lr=3e-3, epochs=4), [0],
                   run.data.special["pad"], "cpu", run.cfg.model.max_seq_len, progress=False)
    once, every = out["bbc-topic"][0], out["every-epoch"][0]
    assert once["best_epoch"] == every["best_epoch"]
    assert once["metrics"] == every["metrics"]


def test_offline_json_shape_and_summary_merge(run_dir):
    before = read_json(run_dir / "summary.json")
    result = evaluate(run_dir, "offline", seeds=[0, 1], tasks=["bbc-topic"], protocol=FAST, max_train=120,
                      max_eval=60, progress=False, log=lambda *_: None)
    saved = read_json(results_path(run_dir, "offline"))
    assert saved == json.loads(json.dumps(result))
    t = saved["tasks"]["bbc-topic"]
    assert t["main_metric"] == "macro_f1" and set(t["metrics"]) == {"macro_f1", "accuracy"}
    m = t["metrics"]["macro_f1"]
    assert len(m["per_seed"]) == 2 and m["mean"] == pytest.approx(np.mean(m["per_seed"]))
    assert m["std"] == pytest.approx(np.std(m["per_seed"], ddof=1))
    assert len(t["best_epoch"]) == 2 and t["sizes"] == {"train": 120, "dev": 60, "test": 60}
    assert set(t["baselines"]) == {"majority", "tfidf_lr"} and "macro_f1" in t["baselines"]["tfidf_lr"]
    assert saved["average"] == pytest.approx(m["mean"]) and saved["seeds"] == [0, 1]
    assert saved["protocol"]["lr"] == 1e-3 and saved["protocol"]["batch_size"] == 16
    summary = read_json(run_dir / "summary.json")
    assert {k: summary[k] for k in before if k != "eval"} == {k: v for k, v in before.items() if k != "eval"}  # kept
    assert summary["eval"]["offline"] == {"average": saved["average"], "tasks": {"bbc-topic": m["mean"]}}
    # another suite is merged beside it, not over it
    merge_summary(run_dir, "glue", {"average": 50.0, "tasks": {"sst2": {"main_metric": "accuracy",
                                                                        "metrics": {"accuracy": {"mean": 50.0}}}}})
    summary = read_json(run_dir / "summary.json")
    assert set(summary["eval"]) == {"offline", "glue"} and summary["eval"]["glue"]["tasks"] == {"sst2": 50.0}


# ------------------------------------------------------------------------------------------ GLUE
SST2 = [("a gripping , beautifully acted film", 1), ("the plot is thin and the jokes fall flat", 0),
        ("an utterly charming and hilarious romp", 1), ("tedious , overlong and badly edited", 0),
        ("one of the best films of the year", 1), ("a waste of a talented cast", 0)]
MRPC = [("The company said profits rose 5 percent .", "Profits at the company rose 5 percent , it said .", 1),
        ("He was arrested on Tuesday in Boston .", "Police in Boston arrested him on Tuesday .", 1),
        ("Shares fell 3 percent in early trading .", "The new model goes on sale next month .", 0),
        ("The senator voted against the bill .", "The bill passed the house with a large majority .", 0)]
STSB = [("A man is playing a guitar .", "A man plays the guitar .", 4.8),
        ("A woman is slicing an onion .", "A man is riding a horse .", 0.2),
        ("Two dogs run on the beach .", "Dogs are running on a beach .", 4.2),
        ("A child is reading a book .", "A kid reads a book .", 4.5)]


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_glue_from_local_files(run_dir, tmp_path):
    for split, reps in (("train", 3), ("validation", 1)):
        write_jsonl(tmp_path / "sst2" / f"{split}.jsonl",
                    [{"sentence": s, "label": y, "idx": i} for i, (s, y) in enumerate(SST2 * reps)])
        write_jsonl(tmp_path / "mrpc" / f"{split}.jsonl",
                    [{"sentence1": a, "sentence2": b, "label": y, "idx": i} for i, (a, b, y) in enumerate(MRPC * reps)])
        write_jsonl(tmp_path / "stsb" / f"{split}.jsonl",
                    [{"sentence1": a, "sentence2": b, "label": y, "idx": i} for i, (a, b, y) in enumerate(STSB * reps)])
    result = evaluate(run_dir, "glue", tasks=["sst2", "mrpc", "stsb"], data_dir=tmp_path, protocol=FAST,
                      progress=False, log=lambda *_: None)
    tasks = result["tasks"]
    assert [(k, v["main_metric"]) for k, v in tasks.items()] == [("sst2", "accuracy"), ("mrpc", "f1"), ("stsb", "pearson")]
    assert tasks["sst2"]["sizes"] == {"train": 18, "validation": 6}
    assert set(tasks["stsb"]["metrics"]) == {"pearson", "spearman"} and result["protocol"]["lr"] == 1e-3
    assert result["average"] == pytest.approx(np.mean([t["metrics"][t["main_metric"]]["mean"] for t in tasks.values()]))
    assert read_json(run_dir / "summary.json")["eval"]["glue"]["tasks"].keys() == tasks.keys()
    # pairs are encoded as [CLS] a [SEP] b [SEP]
    from lmbudget.evaluate.encoding import tokenize
    data = load_run(run_dir).data
    ids = tokenize(data.tokenizer, T.load_hub_task("glue", "mrpc", tmp_path).train, 128)[0]
    assert ids[0] == data.special["cls"] and list(ids).count(data.special["sep"]) == 2


def test_missing_glue_data_is_one_clear_error(run_dir, tmp_path, monkeypatch, capsys):
    import datasets.config
    import huggingface_hub.constants
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)   # fail fast instead of waiting for time-outs
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(EvalDataError) as e:
        evaluate(run_dir, "glue", tasks=["sst2"], data_dir=tmp_path, progress=False, log=lambda *_: None)
    message = str(e.value)
    assert "\n" not in message and "sst2" in message and "train.jsonl" in message and "--data-dir" in message
    from lmbudget.evaluate.cli import main
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", str(run_dir), "--suite", "glue", "--tasks", "sst2", "--data-dir", str(tmp_path), "--quiet"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("lmbudget: error:") and len(err.splitlines()) == 1
    with pytest.raises(SystemExit):  # an unknown task names the choices
        main(["evaluate", str(run_dir), "--suite", "glue", "--tasks", "wnli", "--quiet"])
    assert "choose from cola" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ validation loss
def test_valloss_per_source_fixed_masks_and_extra_corpus(run_dir, tmp_path):
    from lmbudget.data import bbc_articles
    extra = tmp_path / "extra"
    extra.mkdir()
    for a in [a for a in bbc_articles() if a["label"] == "tech"][:5]:
        (extra / f"{a['id'].replace('/', '_')}.txt").write_text(a["body"])
    before = read_json(run_dir / "summary.json")
    first = evaluate(run_dir, "valloss", corpora=[str(extra)], progress=False, log=lambda *_: None)
    second = evaluate(run_dir, "valloss", corpora=[str(extra)], progress=False, log=lambda *_: None)
    tasks = first["tasks"]
    assert {"all", "business", "sports", "corpus:extra"} <= set(tasks)
    assert {k: v["metrics"]["loss"]["mean"] for k, v in tasks.items()} == \
        {k: v["metrics"]["loss"]["mean"] for k, v in second["tasks"].items()}   # fixed masks
    parts = [tasks[s] for s in ("business", "sports")]
    assert tasks["all"]["rows"] == sum(p["rows"] for p in parts)
    assert tasks["all"]["metrics"]["loss"]["mean"] == pytest.approx(
        sum(p["rows"] * p["metrics"]["loss"]["mean"] for p in parts) / tasks["all"]["rows"], rel=1e-5)
    assert 0 < first["average"] == tasks["all"]["metrics"]["loss"]["mean"] < 20
    after = read_json(run_dir / "summary.json")
    assert after["rst_s"] == before["rst_s"] and after["steps"] == before["steps"]  # nothing charged


# ------------------------------------------------------------------------------------------ T5
def test_generate_is_argmax_of_teacher_forcing_ignores_padding_and_stops_at_eos():
    from lmbudget.families.t5 import T5Config
    from lmbudget.models.t5 import T5Model
    torch.manual_seed(0)
    model = T5Model(T5Config(n_layers=2, hidden=32, heads=4, ffn=48, vocab_size=50, rel_buckets=8,
                             rel_max_distance=16), pad_id=0).eval()
    ids = torch.randint(2, 50, (3, 9))
    mask = torch.ones_like(ids)
    ids[0, 6:], mask[0, 6:] = 0, 0
    outputs = model.generate(ids, mask, max_new_tokens=6, eos_id=1)
    assert all(len(out) == 6 for out in outputs)  # a random model never picks eos 1 here
    for row, out in enumerate(outputs):
        n = int(mask[row].sum())
        alone = model.generate(ids[row:row + 1, :n], mask[row:row + 1, :n], max_new_tokens=6, eos_id=1)[0]
        assert out == alone  # padding does not change the output
        with torch.no_grad():
            logits, _, _ = model.target_logits({"input_ids": ids[row:row + 1, :n], "labels": torch.tensor([out + [1]])})
        assert logits.argmax(-1).tolist()[:len(out)] == out  # each token is the argmax given the previous ones
    # With a generated token as eos, each row stops before its first occurrence; the other rows go on unchanged.
    eos = outputs[1][2]
    stopped = model.generate(ids, mask, max_new_tokens=6, eos_id=eos)
    assert stopped == [out[:out.index(eos)] if eos in out else out for out in outputs]
    assert len(stopped[1]) < 6


# ------------------------------------------------------------------------------------------ CLI
def test_cli_parses_and_formats():
    import argparse

    from lmbudget.evaluate.cli import format_result, register
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    a = parser.parse_args(["evaluate", "r", "--suite", "offline", "--seeds", "0,1,2", "--tasks", "bbc-topic,wordnet-gloss",
                           "--corpus", "x", "--corpus", "y", "--lr", "1e-4"])
    assert a.seeds == [0, 1, 2] and a.tasks == ["bbc-topic", "wordnet-gloss"] and a.corpus == ["x", "y"] and a.lr == 1e-4
    with pytest.raises(SystemExit):
        parser.parse_args(["evaluate", "r", "--suite", "offline", "--seeds", "a,b"])
    result = {"run_dir": "r", "suite": "offline", "model": "bert-micro", "checkpoint": "step-1", "seeds": [0, 1],
              "wall_s": 3.0, "average": 61.0, "baselines": {"majority": 7.5, "tfidf_lr": 94.9},
              "tasks": {"bbc-topic": {"main_metric": "macro_f1",
                                      "metrics": {"macro_f1": {"per_seed": [60.0, 62.0], "mean": 61.0, "std": 1.41}},
                                      "baselines": {"majority": {"macro_f1": 7.5}, "tfidf_lr": {"macro_f1": 94.9}}}},
              "skipped": {"wordnet-gloss": "its data is not installed"}}
    lines = format_result(result).splitlines()
    assert lines[2].split() == ["bbc-topic", "macro_f1", "61.00", "+-", "1.41", "7.50", "94.90"]
    assert lines[3].split() == ["average", "61.00", "7.50", "94.90"] and "wordnet-gloss" in lines[4]


def test_seq2seq_harness_learns_and_scores_labels_as_text():
    """The T5 fine-tuning loop and decoding end to end: a tiny T5 memorises 8 headlines."""
    from lmbudget.config import DataConfig
    from lmbudget.families.t5 import T5Config
    from lmbudget.data import bbc_articles
    from lmbudget.data.tokenizer import special_ids, train
    from lmbudget.evaluate.seq2seq import Encoder, Seq2SeqProtocol, finetune, score
    from lmbudget.evaluate.seq2seq_tasks import GenSplit, Seq2SeqTask
    from lmbudget.models.t5 import T5Model
    torch.set_num_threads(1)
    articles = bbc_articles()[:100]
    tok = train([a["body"] for a in articles], DataConfig(tokenizer="unigram", vocab_size=400))
    special = special_ids(tok, "unigram")
    pairs = [(f"headline: {a['body'][:200]}", a["headline"]) for a in articles[:8]]
    task = Seq2SeqTask("copy", pairs, {"train": GenSplit([s for s, _ in pairs], [[h] for _, h in pairs])},
                       {"copy": ("train", "train")})
    protocol = Seq2SeqProtocol(lr=1e-2, epochs=15, batch_size=4, source_length=64, target_length=16)
    torch.manual_seed(0)
    model = T5Model(T5Config(n_layers=2, hidden=64, heads=4, ffn=128, vocab_size=tok.get_vocab_size(),
                                rel_buckets=8, rel_max_distance=32), special["pad"])
    results, per_epoch = finetune(model, task, Encoder(tok, protocol, special), protocol, 0, "cpu", progress=False)
    curve = [scores["train"]["rouge_l"] for scores in per_epoch]
    assert results["copy"]["metrics"]["rouge_l"] == max(curve)  # selected on the split it reports
    assert curve[-1] > 60 and curve[-1] > curve[0] + 40, curve
    # classification as text: case and spaces are forgiven, anything else is wrong
    labels = Seq2SeqTask("t", [], {}, {}, ("accuracy", "macro_f1"), ["Sport", "Tech"])
    split = GenSplit(["a", "b", "c"], [["Sport"], ["Tech"], ["Tech"]], np.array([0, 1, 1]))
    assert score(labels, [" sport", "TECH", "politics"], split)["accuracy"] == pytest.approx(200 / 3)


@pytest.fixture(scope="module")
def t5_run_dir(run_dir, tmp_path_factory):
    """t5-micro trained 3 steps on the same corpus as the BERT run."""
    from lmbudget.runs import load_config, make_config, train
    corpus = load_config(run_dir).data.corpus
    cfg = make_config("t5-micro", budget="3 steps", overrides=[f"data.corpus={corpus}", "train.threads=1"])
    out = tmp_path_factory.mktemp("runs") / "t5"
    train(cfg, out, progress=False, log=lambda *_: None)
    return out


def write_sni(root: Path) -> None:
    """Three tasks in the layout of github.com/allenai/natural-instructions."""
    def task(name, definition, pairs):
        examples = [{"input": x, "output": y, "explanation": "."} for x, y in pairs[:2]]
        instances = [{"id": f"{name}-{i}", "input": x, "output": [y]} for i, (x, y) in enumerate(pairs[2:])]
        path = root / "tasks" / f"{name}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"Definition": [definition], "Positive Examples": examples, "Instances": instances}))
    task("task001_sentiment", "Classify the sentiment of the review as positive or negative.",
         [(s, "positive" if y else "negative") for s, y in SST2 * 2])
    task("task002_paraphrase", "Answer yes if the two sentences mean the same thing, otherwise no.",
         [(f"{a} / {b}", "yes" if y else "no") for a, b, y in MRPC * 2])
    task("task003_title", "Write a short title for the news sentence.",
         [("Shares fell 3 percent in early trading on Monday .", "Shares fall"),
          ("The senator voted against the bill on Friday .", "Senator opposes bill"),
          ("Police in Boston arrested a man on Tuesday .", "Boston arrest"),
          ("The company said profits rose 5 percent .", "Profits rise")])
    splits = root / "splits" / "default"
    splits.mkdir(parents=True)
    (splits / "train_tasks.txt").write_text("task001_sentiment\ntask002_paraphrase\n")
    (splits / "test_tasks.txt").write_text("task003_title\n")


def test_t5_suites_from_a_run(t5_run_dir, tmp_path):
    quiet = dict(progress=False, log=lambda *_: None)
    result = evaluate(t5_run_dir, "offline", tasks=["bbc-headline", "bbc-topic"], protocol={"epochs": 1}, max_train=24,
                      max_eval=8, **quiet)
    head, topic = result["tasks"]["bbc-headline"], result["tasks"]["bbc-topic"]
    assert head["main_metric"] == "rouge_l" and set(head["baselines"]) == {"lead"} and head["sizes"]["test"] == 8
    assert topic["main_metric"] == "macro_f1" and set(topic["baselines"]) == {"majority", "tfidf_lr"}
    assert 0 <= head["metrics"]["rouge_l"]["mean"] <= 100 and result["protocol"]["batch_size"] == 8
    assert result["baselines"] == {}  # no baseline is shared by both tasks
    with pytest.raises(EvalDataError, match="natural-instructions"):
        evaluate(t5_run_dir, "sni", data_dir=tmp_path / "nothing", **quiet)
    write_sni(tmp_path / "sni")
    sni = evaluate(t5_run_dir, "sni", data_dir=tmp_path / "sni", protocol={"epochs": 1}, **quiet)
    assert sni["tasks"]["sni"]["sizes"] == {"train": 10 + 6, "test": 2} and sni["protocol"]["lr"] == 5e-5
    assert sni["tasks"]["sni"]["best_epoch"] == [1]
    loss = evaluate(t5_run_dir, "valloss", **quiet)
    assert loss["average"] == loss["tasks"]["all"]["metrics"]["loss"]["mean"] > 0
    with pytest.raises(EvalError, match="glue is not available for a t5 run"):
        evaluate(t5_run_dir, "glue", **quiet)


def test_sni_prompt_has_definition_two_examples_and_the_input():
    from lmbudget.evaluate.seq2seq_tasks import sni_prompt
    text = sni_prompt("Say the colour.", [{"input": "sky", "output": "blue"}, {"input": "grass", "output": "green"},
                                          {"input": "snow", "output": "white"}], "blood")
    assert text.startswith("Definition: Say the colour.") and "Positive Example 2" in text
    assert "snow" not in text and text.endswith("Input: blood\nOutput: ")
