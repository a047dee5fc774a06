"""lm-evaluation-harness on a gpt run: the real ``lm_eval`` CLI on an export, ``--suite lm-eval`` on the
in-memory model, and both against the accuracy computed from lmbudget's own model on the same documents,
on a small local multiple-choice task defined here (task YAML + a jsonl file; nothing from the hub)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lmbudget.evaluate import EvalError, evaluate

TASK = "lmb_tiny_mc"
# Questions with 2-4 choices of unequal lengths (so acc and acc_norm can differ) and golds in every position.
DOCS = [
    ("The capital of France is", ["Paris", "London", "a small town in Spain", "Rome"], 0),
    ("The government said the new tax would", ["rise", "fall sharply next year"], 1),
    ("Football fans watched the", ["match", "film", "election results"], 0),
    ("The shares of the company", ["rose", "sang a song", "went on holiday", "ate"], 0),
    ("The minister told reporters that", ["the plan would go ahead", "yes", "blue"], 0),
    ("In the final minute the striker", ["scored", "voted", "baked bread for the whole team"], 0),
    ("The film won an award for best", ["actor", "interest rate", "goal"], 0),
    ("Mobile phone makers sold more", ["handsets", "goals", "votes"], 0),
    ("The bank raised interest", ["rates", "cakes", "goals in the second half"], 0),
    ("Voters went to the polls on", ["Thursday", "the moon", "a very long and winding road"], 0),
    ("The band released a new", ["album", "budget"], 0),
    ("The prime minister", ["said", "barked loudly at the cat", "rained"], 0),
]
DOCS = [(q, c, (g + i) % len(c)) for i, (q, c, g) in enumerate(DOCS)]  # rotate the gold through the positions
YAML = """task: {task}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {path}
test_split: test
output_type: multiple_choice
doc_to_text: "{{{{question}}}}"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: gold
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
  - metric: acc_norm
    aggregation: mean
    higher_is_better: true
"""


@pytest.fixture(scope="module")
def lm(gpt_run, tmp_path_factory):
    """The gpt-micro run, its export, the task folder, and the lm_eval CLI's results on the export."""
    from lmbudget.export import export_run
    root, run_dir = tmp_path_factory.mktemp("lmeval"), gpt_run
    tasks = root / "tasks"
    tasks.mkdir()
    data = tasks / "docs.jsonl"
    data.write_text("".join(json.dumps({"question": q, "choices": c, "gold": g}) + "\n" for q, c, g in DOCS))
    (tasks / f"{TASK}.yaml").write_text(YAML.format(task=TASK, path=data))
    export = export_run(run_dir, root / "hf", log=lambda *_: None)
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               HF_HOME=str(root / "hf-home"))
    proc = subprocess.run([sys.executable, "-m", "lm_eval", "--model", "hf", "--model_args", f"pretrained={export}",
                           "--tasks", TASK, "--include_path", str(tasks), "--device", "cpu", "--output_path",
                           str(root / "out"), "--log_samples"], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads(next((root / "out").rglob("results_*.json")).read_text())
    samples = next((root / "out").rglob(f"samples_{TASK}_*.jsonl")).read_text().splitlines()
    samples = [json.loads(line) for line in samples]
    return {"run": run_dir, "tasks": tasks, "cli": results, "table": proc.stdout, "samples": samples}


@pytest.fixture(scope="module")
def suite(lm):
    return evaluate(lm["run"], "lm-eval", tasks=[TASK], data_dir=lm["tasks"], progress=False, log=lambda *_: None)


def own_loglikelihoods(run_dir) -> list[np.ndarray]:
    """Per document, each choice's log p(" " + choice | question) summed over its tokens, from lmbudget's model and
    tokenizer: the formula lm-eval's multiple_choice applies, computed without transformers or lm-eval."""
    from lmbudget.evaluate.pretrained import load_run
    run = load_run(run_dir)
    model, tok = run.model().eval(), run.data.tokenizer
    out = []
    for question, choices, _ in DOCS:
        context = tok.encode(question, add_special_tokens=False).ids
        lls = []
        for choice in choices:
            cont = tok.encode(" " + choice, add_special_tokens=False).ids
            with torch.no_grad():
                logp = F.log_softmax(model.logits(torch.tensor([context + cont])), -1)[0]
            lls.append(sum(float(logp[len(context) - 1 + j, t]) for j, t in enumerate(cont)))
        out.append(np.array(lls))
    return out


def test_lm_eval_cli_runs_on_an_export(lm):
    entry = lm["cli"]["results"][TASK]
    assert lm["cli"]["n-samples"][TASK]["effective"] == len(DOCS)
    assert 0 <= entry["acc,none"] <= 1 and 0 <= entry["acc_norm,none"] <= 1
    assert TASK in lm["table"] and "acc_norm" in lm["table"]


def test_suite_gives_the_clis_numbers(lm, suite):
    from lmbudget.evaluate import results_path
    from lmbudget.evaluate.cli import format_result
    from lmbudget.io import read_json
    cli, task = lm["cli"]["results"][TASK], suite["tasks"][TASK]
    for metric in ("acc", "acc_norm"):
        assert task["metrics"][metric]["mean"] == cli[f"{metric},none"]
        assert task["metrics"][metric]["stderr"] == pytest.approx(cli[f"{metric}_stderr,none"])
    assert task["main_metric"] == "acc_norm" and task["sizes"] == {"test": len(DOCS)}
    assert read_json(results_path(lm["run"], "lm-eval")) == json.loads(json.dumps(suite))
    assert read_json(lm["run"] / "summary.json")["eval"]["lm-eval"]["tasks"][TASK] == cli["acc_norm,none"]
    assert suite["protocol"]["include_path"] == str(lm["tasks"]) and suite["protocol"]["precision"] == "fp32"
    printed = format_result(suite)
    assert f"acc_norm   {cli['acc_norm,none']:.4f} +- {cli['acc_norm_stderr,none']:.4f}" in printed


def test_accuracy_is_lmbudgets_own_loglikelihood_argmax(lm, suite):
    lls = own_loglikelihoods(lm["run"])
    by_doc = sorted(lm["samples"], key=lambda s: s["doc_id"])
    for ours, sample in zip(lls, by_doc, strict=True):  # every choice's log-likelihood as lm-eval computed it
        theirs = np.array([r[0][0] for r in sample["resps"]], dtype=np.float64)
        assert np.abs(ours - theirs).max() < 1e-4
    gold = np.array([g for _, _, g in DOCS])
    acc = np.mean([ll.argmax() for ll in lls] == gold)
    acc_norm = np.mean([(ll / np.array([len(c) for c in choices])).argmax() for ll, (_, choices, _) in zip(lls, DOCS)]
                       == gold)
    assert suite["tasks"][TASK]["metrics"]["acc"]["mean"] == pytest.approx(acc)
    assert suite["tasks"][TASK]["metrics"]["acc_norm"]["mean"] == pytest.approx(acc_norm)
    chance = np.mean([1 / len(c) for _, c, _ in DOCS])
    assert suite["tasks"][TASK]["baselines"]["random"]["acc_norm"] == pytest.approx(chance)


def test_unknown_task_no_tasks_and_missing_lm_eval_are_one_line_errors(lm, monkeypatch, capsys):
    from lmbudget.cli import main
    with pytest.raises(SystemExit) as e:
        main(["evaluate", str(lm["run"]), "--suite", "lm-eval", "--tasks", "no_such_task",
              "--include-path", str(lm["tasks"])])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert e.value.code == 2 and "'no_such_task'" in err and "--include-path" in err
    with pytest.raises(EvalError, match="needs --tasks"):
        evaluate(lm["run"], "lm-eval", data_dir=lm["tasks"], log=lambda *_: None)
    with pytest.raises(EvalError, match="is not a folder"):
        evaluate(lm["run"], "lm-eval", tasks=[TASK], data_dir=lm["tasks"] / "missing", log=lambda *_: None)
    monkeypatch.setitem(sys.modules, "lm_eval", None)
    with pytest.raises(EvalError, match=r"pip install 'lmbudget\[lmeval\]'") as missing:
        evaluate(lm["run"], "lm-eval", tasks=[TASK], data_dir=lm["tasks"], log=lambda *_: None)
    assert "\n" not in str(missing.value)


def test_cli_takes_lm_evals_option_names():
    import argparse

    from lmbudget.evaluate.cli import register
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    a = parser.parse_args(["evaluate", "r", "--suite", "lm-eval", "--tasks", "a,b", "--include-path", "d",
                           "--limit", "5", "--batch-size", "4"])
    assert (a.tasks, str(a.data_dir), a.max_eval, a.batch_size) == (["a", "b"], "d", 5, 4)


def test_a_family_without_a_transformers_counterpart_is_refused_with_exports_line(tmp_path):
    from types import SimpleNamespace

    from lmbudget.evaluate.lmeval import hf_pair
    from lmbudget.families import family
    from lmbudget.presets import preset_config
    run = SimpleNamespace(family=family("bert"), run_dir=tmp_path, cfg=preset_config("bert-micro"),
                          model=lambda: torch.nn.Identity(), data=SimpleNamespace(tokenizer=None, special={}))
    with pytest.raises(EvalError, match="gated FFN") as e:
        hf_pair(run, "cpu", "fp32")
    assert "\n" not in str(e.value)


def test_offline_turns_the_hub_off_and_restores_it(monkeypatch):
    import datasets.config
    import huggingface_hub.constants as hub

    from lmbudget.evaluate.lmeval import offline
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    with offline():
        assert hub.HF_HUB_OFFLINE and datasets.config.HF_HUB_OFFLINE and os.environ["HF_DATASETS_OFFLINE"] == "1"
    assert not hub.HF_HUB_OFFLINE and not datasets.config.HF_HUB_OFFLINE and "HF_HUB_OFFLINE" not in os.environ
