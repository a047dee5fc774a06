"""Text-to-text tasks for encoder-decoder families (T5): BBC headlines, the offline classifications as
text, and Super-NaturalInstructions. Each is a :class:`Seq2SeqTask` for the harness ``seq2seq.py``.

Offline tasks (splits as ``tasks.py``): ``bbc-headline`` generates the headline of a reserved BBC
article from its body (ROUGE-L; best epoch by dev ROUGE-L, test reported; reference point: the
body's first words, as many as the median training headline), and the offline classification tasks
as text to text (the target is the label's name; an output that is no label name counts as wrong),
with the same majority / TF-IDF baselines as the classification head gets.

Super-NaturalInstructions data: local files in the layout of the dataset's own repository
(``git clone https://github.com/allenai/natural-instructions``), in ``--data-dir`` or
``$LMBUDGET_HOME/sni``::

    DIR/splits/default/train_tasks.txt, test_tasks.txt      task names, one per line
    DIR/tasks/<task>.json    {"Definition": [...], "Positive Examples": [{"input", "output"}, ...],
                              "Instances": [{"id", "input", "output": [...]}, ...]}

The hub copies of the dataset drop the positive examples the protocol needs, so none is used. Input
= task definition + 2 positive examples (Tk-Instruct's "Def + Pos(2)" template, :func:`sni_prompt`),
``SNI_INSTANCES`` instances per task; ROUGE-L against the best of an instance's references.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lmbudget.evaluate import metrics as M
from lmbudget.evaluate.tasks import EvalDataError, Split, TaskData, subset_index
from lmbudget.io import lmbudget_home

SNI_INSTANCES = 100


@dataclass
class GenSplit:
    sources: list[str]
    references: list[list[str]]              # one or more acceptable outputs per example
    labels: np.ndarray | None = None         # classification as text: the class ids

    def __len__(self) -> int:
        return len(self.sources)


@dataclass
class Seq2SeqTask:
    name: str
    train: list[tuple[str, str]]
    evals: dict[str, GenSplit]
    report: dict[str, tuple[str | None, str]]   # entry -> (selection split or None: last epoch, reported split)
    metrics: tuple[str, ...] = ("rouge_l",)
    label_names: list[str] = field(default_factory=list)
    baselines: dict = field(default_factory=dict)   # entry -> {name: metrics}
    note: str = ""

    @property
    def main(self) -> str:
        return self.metrics[0]


def classification_as_text(task: TaskData) -> Seq2SeqTask:
    """A classification task as text to text: the target is the label's name."""
    from lmbudget.evaluate.baselines import baselines

    def source(split: Split, i: int) -> str:
        return f"{task.name}: {split.a[i]}" if split.b is None else f"{task.name}: {split.a[i]} || {split.b[i]}"

    names = task.label_names
    train = [(source(task.train, i), names[y]) for i, y in enumerate(task.train.labels)]
    evals = {k: GenSplit([source(s, i) for i in range(len(s))], [[names[y]] for y in s.labels], s.labels)
             for k, s in task.evals.items()}
    return Seq2SeqTask(task.name, train, evals, dict(task.report), task.metrics, names, baselines(task), task.note)


def bbc_headline(max_train: int = 0, max_eval: int = 0) -> Seq2SeqTask | None:
    from lmbudget.evaluate.tasks import OFFLINE_SPLIT_SEED, reserved_bbc, stratified_split

    articles = reserved_bbc()  # never the pre-training half, nor its duplicates
    if not articles:
        return None
    parts = stratified_split([a["label"] for a in articles], OFFLINE_SPLIT_SEED)
    train, dev, test = ([articles[i] for i in p] for p in parts)
    train, dev, test = subsample(train, max_train, 0), subsample(dev, max_eval, 1), subsample(test, max_eval, 1)

    def split(rows):
        return GenSplit([f"headline: {a['body']}" for a in rows], [[a["headline"]] for a in rows])
    evals = {"dev": split(dev), "test": split(test)}
    words = int(np.median([len(a["headline"].split()) for a in train]))
    lead = [" ".join(a["body"].split()[:words]) for a in test]
    base = {"bbc-headline": {"lead": {"rouge_l": M.rouge_l_multi(lead, evals["test"].references)}}}
    return Seq2SeqTask("bbc-headline", [(f"headline: {a['body']}", a["headline"]) for a in train], evals,
                       {"bbc-headline": ("dev", "test")}, ("rouge_l",), [], base,
                       f"{len(articles)} BBC articles reserved from pre-training, de-duplicated; lead = first {words} words of the body")


def subsample(items: list, n: int, seed: int) -> list:
    """A seeded random subset of at most ``n`` items (all when n <= 0), in their original order."""
    index = subset_index(len(items), n, seed)
    return items if index is None else [items[i] for i in index]


def offline_seq2seq_tasks(max_train: int = 0, max_eval: int = 0) -> dict:
    """Loaders (None when the data is not installed), capped before baselines are computed."""
    from lmbudget.evaluate import tasks as T

    def as_text(name):
        def load():
            task = T.OFFLINE[name]()
            return None if task is None else classification_as_text(T.cap_task(task, max_train, max_eval))
        return load
    return {"bbc-headline": lambda: bbc_headline(max_train, max_eval), **{name: as_text(name) for name in T.OFFLINE}}


def sni_prompt(definition: str, examples: list[dict], x: str) -> str:
    """Tk-Instruct's "Def + Pos(2)" encoding."""
    parts = [f"Definition: {definition.strip()}\n\n"]
    for k, ex in enumerate(examples[:2], 1):
        parts.append(f"Positive Example {k} -\nInput: {ex['input'].strip()}\nOutput: {ex['output'].strip()}\n\n")
    parts.append(f"Now complete the following example -\nInput: {x.strip()}\nOutput: ")
    return "".join(parts)


def sni_root(data_dir: Path | None) -> Path:
    root = Path(data_dir) if data_dir else lmbudget_home() / "sni"
    if not (root / "splits" / "default" / "train_tasks.txt").exists() or not (root / "tasks").is_dir():
        raise EvalDataError(
            f"Super-NaturalInstructions not found in {root} (needs splits/default/train_tasks.txt, test_tasks.txt and "
            f"tasks/<task>.json): `git clone https://github.com/allenai/natural-instructions {root}` where there is "
            "network, or pass --data-dir DIR holding that layout")
    return root


def sni_task(data_dir: Path | None = None, max_tasks: int = 0, instances: int = SNI_INSTANCES, max_train: int = 0,
             max_eval: int = 0) -> Seq2SeqTask:
    """Train on the default split's train tasks, evaluate on its test tasks, ``instances`` per task."""
    root = sni_root(data_dir)

    def rows(split: str):
        names = [n.strip() for n in (root / "splits" / "default" / f"{split}_tasks.txt").read_text().split() if n.strip()]
        names = names[:max_tasks] if max_tasks > 0 else names
        for name in names:
            path = root / "tasks" / f"{name}.json"
            if not path.exists():
                raise EvalDataError(f"Super-NaturalInstructions task file {path} is missing: re-clone the repository")
            t = json.loads(path.read_text())
            for inst in t["Instances"][:instances]:
                outputs = inst["output"] if isinstance(inst["output"], list) else [inst["output"]]
                yield sni_prompt(t["Definition"][0], t["Positive Examples"], inst["input"]), outputs

    train = subsample([(s, outs[0]) for s, outs in rows("train")], max_train, 0)
    test = subsample(list(rows("test")), max_eval, 1)
    evals = {"test": GenSplit([s for s, _ in test], [outs for _, outs in test])}
    caps = [f"first {max_tasks} tasks of each split" if max_tasks else "",
            f"{max_train} training instances" if max_train else "", f"{max_eval} test instances" if max_eval else ""]
    note = "; ".join(c for c in caps if c)
    return Seq2SeqTask("sni", train, evals, {"sni": (None, "test")}, ("rouge_l",), note=note)
