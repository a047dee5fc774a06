"""Zero-shot multiple choice for causal language models (``lmbudget evaluate RUN --suite zeroshot``).

The usual way decoder LMs are compared: no training, each candidate continuation scored by its
log-likelihood given a prompt, as lm-evaluation-harness does. On the offline classification tasks
(the test split of ``lmbudget.evaluate.tasks``, the same examples the other suites report on):

* ``bbc-topic``: the article's opening, then ``"\\nTopic:"``; candidates `` business``, `` sport``, ...
* ``fortune-category``: the fortune, then ``"\\nCategory:"``; candidates the fortune files' names.

``accuracy`` picks the candidate of the highest total log-likelihood; ``accuracy_norm`` (the main
metric) divides it by the candidate's length in bytes first, as lm-eval's ``acc_norm``. Beside each
task: the ``random`` baseline (1 / candidates) and a ``unigram`` baseline that ignores the prompt and
picks the candidate whose tokens are most frequent in the run's training data (per byte for the
normalised metric), so a score above it shows the model reads the prompt. The prompt is cut from the
left to fit the model's positions. Nothing here is charged on any clock.
"""
from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F

PROMPTS = {"bbc-topic": "\nTopic:", "fortune-category": "\nCategory:"}
PROMPT_CHARS = 1000  # the opening of a long article is enough, and keeps the pass short


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
    """Picks per example (N, K scores): by total log-likelihood, and per byte of the candidate."""
    return scores.argmax(1), (scores / lengths).argmax(1)


def zeroshot_suite(run, suite, seeds, requested, data_dir, protocol, max_train, max_eval, device, progress, log) -> dict:
    from lmbudget.evaluate import tasks as T
    from lmbudget.evaluate.schema import suite_averages, task_entry

    tokenizer, model = run.data.tokenizer, run.model(device).eval()
    counts = np.bincount(np.asarray(run.data.split("train").tokens[:20000]).reshape(-1),
                         minlength=run.cfg.model.vocab_size).astype(np.float64) + 1.0
    unigram = np.log(counts / counts.sum())
    results, skipped = {}, {}
    for name in T.choose(requested, list(PROMPTS), suite):
        task = T.OFFLINE[name]()
        if task is None:
            skipped[name] = f"its data is not installed ({T.OFFLINE_HINTS[name]})"
            continue
        started = time.time()
        test = T.cap(task.evals["test"], max_eval, 0) if max_eval else task.evals["test"]
        words = [" " + label for label in task.label_names]
        candidates = [tokenizer.encode(w, add_special_tokens=False).ids for w in words]
        lengths = np.array([len(w.encode()) for w in words], dtype=np.float64)
        scores = np.stack([
            continuation_logprobs(model, tokenizer.encode(text[:PROMPT_CHARS] + PROMPTS[name],
                                                          add_special_tokens=False).ids,
                                  candidates, run.cfg.model.max_seq_len, device).numpy()
            for text in test.a])
        prior = np.array([unigram[c].sum() for c in candidates])
        picks = {"model": choose(scores, lengths), "unigram": choose(np.tile(prior, (len(test), 1)), lengths)}
        acc = {k: {"accuracy": 100 * float((raw == test.labels).mean()),
                   "accuracy_norm": 100 * float((norm == test.labels).mean())} for k, (raw, norm) in picks.items()}
        chance = 100 / len(words)
        base = {"random": {"accuracy": chance, "accuracy_norm": chance}, "unigram": acc["unigram"]}
        results[name] = task_entry("accuracy_norm", ("accuracy", "accuracy_norm"), [{"metrics": acc["model"]}], base,
                                   {"test": len(test)}, f"{len(words)} candidates: {', '.join(task.label_names)}",
                                   round(time.time() - started, 1))
        log(f"  zeroshot/{name}: accuracy_norm {acc['model']['accuracy_norm']:.1f}, accuracy "
            f"{acc['model']['accuracy']:.1f} (random {chance:.1f}, unigram {acc['unigram']['accuracy_norm']:.1f})")
    average, base_avg = suite_averages(results)
    return {"seeds": [0], "protocol": {"prompts": PROMPTS, "prompt_chars": PROMPT_CHARS}, "average": average,
            "baselines": base_avg, "tasks": results, "skipped": skipped}
