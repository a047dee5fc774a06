"""Zero-shot multiple choice for causal language models (``lmbudget evaluate RUN --suite zeroshot``).

The usual way decoder LMs are compared: no training, each candidate continuation scored by its
log-likelihood given a prompt, as lm-evaluation-harness does. On the offline classification tasks
(the test split of ``lmbudget.evaluate.tasks``, the same examples the other suites report on):

* ``bbc-topic``: the article's opening, then ``"\\nTopic:"``; candidates `` business``, `` sport``, ...
* ``fortune-category``: the fortune, then ``"\\nCategory:"``; candidates the fortune files' names.
* ``wordnet-word`` (where WordNet is installed): a synset's definition, then ``"\\nWord:"``; candidates
  one of its lemmas and three lemmas of other synsets of the same part of speech (500 seeded synsets).

Where the run's corpus holds the task's source (offline-en's fortunes, WordNet's glosses), the task is
labelled seen text: its prompts are pre-training text.

``accuracy`` picks the candidate of the highest total log-likelihood; ``accuracy_norm`` (the main
metric) divides it by the candidate's length in bytes first, as lm-eval's ``acc_norm``. Beside each
task: the ``random`` baseline (the mean of 1 / candidates) and a ``unigram`` baseline that ignores the prompt and
picks the candidate whose tokens are most frequent in the run's training data (per byte for the
normalised metric), so a score above it shows the model reads the prompt. The prompt is cut from the
left to fit the model's positions. Nothing here is charged on any clock.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from lmbudget.data import sources as S

PROMPTS = {"bbc-topic": "\nTopic:", "fortune-category": "\nCategory:", "wordnet-word": "\nWord:"}
PROMPT_CHARS = 1000  # the opening of a long article is enough, and keeps the pass short
WORDNET_EXAMPLES = 500
WORDNET_CANDIDATES = 4


@dataclass
class Choices:
    """A multiple-choice task: per example a prompt, its candidate continuations and the right one's index."""
    prompts: list[str]
    candidates: list[list[str]]
    answers: np.ndarray
    note: str

    def __len__(self) -> int:
        return len(self.prompts)

    def subset(self, n: int) -> "Choices":
        """A seeded random subset of ``n`` examples (all when n <= 0 or there are no more)."""
        from lmbudget.evaluate.tasks import subset_index
        index = subset_index(len(self), n, 0)
        if index is None:
            return self
        return Choices([self.prompts[i] for i in index], [self.candidates[i] for i in index], self.answers[index],
                       self.note)


def labelled_choices(name: str) -> Choices | None:
    """An offline classification task's test split: each text's opening and the prompt, the labels as candidates."""
    from lmbudget.evaluate import tasks as T
    task = T.OFFLINE[name]()
    if task is None:
        return None
    test, words = task.evals["test"], [" " + label for label in task.label_names]
    return Choices([text[:PROMPT_CHARS] + PROMPTS[name] for text in test.a], [words] * len(test), test.labels,
                   f"{len(words)} candidates: {', '.join(task.label_names)}")


def wordnet_word(n: int = WORDNET_EXAMPLES) -> Choices | None:
    """WordNet 3.0: a synset's definition, then the prompt; candidates one of its lemmas and lemmas of
    WORDNET_CANDIDATES - 1 other synsets of the same part of speech (so the word class gives nothing away),
    in a seeded random order; ``n`` seeded synsets."""
    from lmbudget.evaluate import tasks as T
    synsets = T.wordnet_synsets()
    if not synsets:
        return None
    rng = np.random.default_rng(T.OFFLINE_SPLIT_SEED)
    by_pos = {p: [i for i, s in enumerate(synsets) if s[0] == p] for p in T.WORDNET_POS}
    prompts, candidates, answers = [], [], []
    for k in rng.permutation(len(synsets))[:n]:
        pos, lemmas, definition = synsets[k]
        pool = by_pos[pos] if len(by_pos[pos]) >= 4 * WORDNET_CANDIDATES else range(len(synsets))
        words = [lemmas[rng.integers(len(lemmas))]]
        while len(words) < WORDNET_CANDIDATES:
            other = synsets[pool[rng.integers(len(pool))]][1]
            word = other[rng.integers(len(other))]
            if word not in lemmas and word not in words:
                words.append(word)
        order = rng.permutation(WORDNET_CANDIDATES)
        prompts.append(definition + PROMPTS["wordnet-word"])
        candidates.append([" " + words[i] for i in order])
        answers.append(int(np.flatnonzero(order == 0)[0]))
    return Choices(prompts, candidates, np.array(answers, dtype=np.int64),
                   f"{WORDNET_CANDIDATES} candidates: the defined word and lemmas of other synsets of its part of speech")


# name -> (its examples, the source its text is read from: its hint where absent; and where the run's corpus holds
# that source, the prompts are seen text. BBC topic's articles are the half reserved from pre-training: never seen.)
TASKS = {"bbc-topic": (lambda: labelled_choices("bbc-topic"), S.BBCNews, False),
         "fortune-category": (lambda: labelled_choices("fortune-category"), S.Fortunes, True),
         "wordnet-word": (wordnet_word, S.WordNet, True)}


def continuation_logprobs(model, prompt: list[int], candidates: list[list[int]], max_len: int,
                          device="cpu") -> torch.Tensor:
    """(K,) total log-probability of each candidate's tokens after ``prompt`` (cut from the left to fit)."""
    longest = max(map(len, candidates))
    prompt = prompt[-(max_len - longest):]
    rows = [prompt + c for c in candidates]
    width = max(map(len, rows))
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = torch.tensor(r)
    with torch.no_grad():
        logp = F.log_softmax(model.logits(ids.to(device)).float(), dim=-1).cpu()
    out = []
    for i, c in enumerate(candidates):
        positions = torch.arange(len(prompt) - 1, len(prompt) - 1 + len(c))  # each predicts the next token
        out.append(logp[i, positions, torch.tensor(c)].sum())
    return torch.stack(out)


def choose(scores: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Picks per example (N, K scores; lengths (K,) or (N, K)): by total log-likelihood, and per byte of the candidate."""
    return scores.argmax(1), (scores / lengths).argmax(1)


def zeroshot_suite(run, suite, seeds, requested, data_dir, protocol, max_train, max_eval, device, progress, log) -> dict:
    from lmbudget.evaluate import tasks as T
    from lmbudget.evaluate.schema import suite_averages, task_entry

    tokenizer, model = run.data.tokenizer, run.model(device).eval()
    counts = np.bincount(np.asarray(run.data.split("train").tokens[:20000]).reshape(-1),
                         minlength=run.cfg.model.vocab_size).astype(np.float64) + 1.0
    unigram = np.log(counts / counts.sum())
    trained_on = set(run.data.manifest.get("source_names", []))
    encoded: dict[str, list[int]] = {}

    def ids(text: str) -> list[int]:
        if text not in encoded:
            encoded[text] = tokenizer.encode(text, add_special_tokens=False).ids
        return encoded[text]

    results, skipped = {}, {}
    for name in T.choose(requested, list(TASKS), suite):
        build, source, seen = TASKS[name]
        task = build()
        if task is None:
            skipped[name] = f"its data is not installed ({source.hint})"
            continue
        started = time.time()
        test = task.subset(max_eval) if max_eval else task
        scores = np.stack([continuation_logprobs(model, ids(prompt), [ids(c) for c in cands],
                                                 run.cfg.model.max_seq_len, device).numpy()
                           for prompt, cands in zip(test.prompts, test.candidates)])
        lengths = np.array([[len(c.encode()) for c in cands] for cands in test.candidates], dtype=np.float64)
        prior = np.array([[unigram[ids(c)].sum() for c in cands] for cands in test.candidates])
        picks = {"model": choose(scores, lengths), "unigram": choose(prior, lengths)}
        acc = {k: {"accuracy": 100 * float((raw == test.answers).mean()),
                   "accuracy_norm": 100 * float((norm == test.answers).mean())} for k, (raw, norm) in picks.items()}
        chance = float(np.mean([100 / len(c) for c in test.candidates]))
        base = {"random": {"accuracy": chance, "accuracy_norm": chance}, "unigram": acc["unigram"]}
        note = (f"{T.SEEN_NOTE}; " if seen and source.name in trained_on else "") + task.note
        results[name] = task_entry("accuracy_norm", ("accuracy", "accuracy_norm"), [{"metrics": acc["model"]}], base,
                                   {"test": len(test)}, note, round(time.time() - started, 1))
        log(f"  zeroshot/{name}: accuracy_norm {acc['model']['accuracy_norm']:.1f}, accuracy "
            f"{acc['model']['accuracy']:.1f} (random {chance:.1f}, unigram {acc['unigram']['accuracy_norm']:.1f})")
    average, base_avg = suite_averages(results)
    return {"seeds": [0], "protocol": {"prompts": PROMPTS, "prompt_chars": PROMPT_CHARS}, "average": average,
            "baselines": base_avg, "tasks": results, "skipped": skipped}
