"""The data audit's figures for a preset's corpus, before and after a change to the data recipe.

    PYTHONPATH=OLD_TREE python benchmarks/data_hygiene.py dump --out before.json   # any lmbudget version
    python benchmarks/data_hygiene.py dump --out after.json
    python benchmarks/data_hygiene.py measure before.json after.json             # this tree's span hashing
    python benchmarks/data_hygiene.py --quick dump --model bert-micro --out d.json data.corpus=DIR   # + measure (smoke)

``dump`` prepares the preset's data (``--model``, default bert-demo) with the lmbudget on the path
and writes every split's documents plus the count of packed validation rows that are mostly table
markup (``=``, ``-``, ``+``, ``|`` tokens: reST table borders). ``measure`` prints, per dump: the
validation (and test) documents sharing a 13-word span with train, those at least 90% covered,
holdout documents that are exact duplicates of a train document (lower-cased words) and those at
least half covered by train's 13-word spans.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

MARKUP = {"=", "-", "+", "|"}


def dump(model: str, out: Path, overrides: list[str]) -> None:
    from lmbudget.data import prepare_data
    from lmbudget.data.corpus import collect
    from lmbudget.data.shards import usable_sources
    from lmbudget.runs import make_config

    cfg = make_config(model, overrides=overrides).data
    data = prepare_data(cfg, log=print)
    corpus = collect(usable_sources(cfg, print)[0], cfg, lambda *_: None)
    rows = data.split("validation").tokens
    special = set(data.special.values())
    vocab = {i: t for t, i in data.tokenizer.get_vocab().items()}
    markup = 0
    for row in np.asarray(rows):
        words = [vocab[int(t)] for t in row if int(t) not in special]
        markup += bool(words) and sum(w in MARKUP for w in words) >= len(words) / 2
    out.write_text(json.dumps({"model": model, "validation_rows": len(rows), "markup_rows": int(markup),
                               "docs": {split: [t for _, t in docs] for split, docs in corpus.docs.items()}}))
    print(f"{out}: {len(rows)} validation rows, {markup} mostly table markup")


def measure(path: Path) -> dict:
    from lmbudget.data.corpus import WORD, Spans

    d = json.loads(path.read_text())
    docs = d["docs"]
    order = [(split, i) for split in docs for i in range(len(docs[split]))]
    spans = Spans([docs[s][i] for s, i in order])
    index = {s: np.array([k for k, (t, _) in enumerate(order) if t == s], dtype=np.int64) for s in docs}
    train = index["train"]
    out = {"validation_rows": d["validation_rows"], "markup_rows": d["markup_rows"]}
    train_texts = {" ".join(WORD.findall(t.lower())) for t in docs["train"]}
    for split in ("validation", "test", "holdout"):
        if split not in index or not len(index[split]):
            continue
        share = spans.share_in(index[split], train)[index[split]]
        out[split] = {"documents": len(index[split]), "share_a_13_word_span": int((share > 0).sum()),
                      "at_least_90pct_covered": int((share >= 0.9).sum()),
                      "at_least_half_covered": int((share >= 0.5).sum()),
                      "exact_duplicates_of_train": sum(" ".join(WORD.findall(t.lower())) in train_texts
                                                       for t in docs[split])}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="measure the dump at once (a smoke run)")
    sub = p.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("dump")
    a.add_argument("--model", default="bert-demo")
    a.add_argument("--out", type=Path, required=True)
    a.add_argument("overrides", nargs="*", help="config overrides (data.corpus=DIR, ...)")
    m = sub.add_parser("measure")
    m.add_argument("dumps", type=Path, nargs="+")
    args = p.parse_args()
    if args.cmd == "dump":
        dump(args.model, args.out, args.overrides)
        if args.quick:
            print(args.out, json.dumps(measure(args.out)))
    else:
        for path in args.dumps:
            print(path, json.dumps(measure(path), indent=1))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
