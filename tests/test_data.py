"""The data pipeline on a tiny real corpus (BBC News articles as .txt, .jsonl and .parquet)."""
from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from lmbudget.config import ConfigError, DataConfig
from lmbudget.data import CorpusError, bbc_articles, prepare_data
from lmbudget.data import sources as S
from lmbudget.data import tokenizer as tokenization
from lmbudget.data.corpus import SPLITS, collect, split_of
from lmbudget.data.loader import BatchStream
from lmbudget.data.mlm import mask_tokens
from lmbudget.data.shards import MARKER, encode, usable_sources
from lmbudget.data.packing import Packing
from lmbudget.families import family
from lmbudget.families.bert import BertFamily

WP_SPECIAL = {"pad": 0, "unk": 1, "cls": 2, "sep": 3, "mask": 4}


@pytest.fixture(scope="module")
def articles():
    return [a for a in bbc_articles() if not a["reserved"]]


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory, articles):
    """news/: 60 articles as .txt plus a whitespace-variant duplicate; top level: 30 in .jsonl, 30 in .parquet."""
    root = tmp_path_factory.mktemp("corpus")
    (root / "news").mkdir()
    for a in articles[:60]:
        (root / "news" / f"{a['id'].replace('/', '_')}.txt").write_text(f"{a['headline']}\n\n{a['body']}")
    a = articles[0]
    (root / "news" / "copy.txt").write_text(f"  {a['headline']}\n{a['body'].replace(' ', '   ')}\n")
    with open(root / "more.jsonl", "w") as f:
        for a in articles[60:90]:
            f.write(json.dumps({"text": a["body"], "id": a["id"]}) + "\n")
    pq.write_table(pa.table({"text": [a["body"] for a in articles[90:120]]}), root / "more.parquet")
    return root


def data_config(corpus, cache, **kw) -> DataConfig:
    base = dict(corpus=str(corpus), vocab_size=500, seq_len=64, validation_fraction=0.1, holdout_fraction=0.2,
                cache_dir=str(cache))
    return DataConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def prepared(corpus_dir, cache):
    return prepare_data(data_config(corpus_dir, cache), log=lambda *_: None)


# ------------------------------------------------------------------------------------------ sources
def test_local_folder_reads_txt_jsonl_parquet_with_one_source_per_subfolder(corpus_dir, articles):
    news, top = S.resolve_sources(str(corpus_dir))
    assert (news.name, top.name) == ("news", corpus_dir.name)
    news_docs, top_docs = list(news.documents()), list(top.documents())
    assert len(news_docs) == 61 and f"{articles[5]['headline']}\n\n{articles[5]['body']}" in news_docs
    assert top_docs == [a["body"] for a in articles[60:90]] + [a["body"] for a in articles[90:120]]


def test_long_text_file_is_cut_at_blank_lines(tmp_path):
    paragraphs = [f"paragraph {i} " + "word " * 300 for i in range(40)]
    (tmp_path / "book.txt").write_text("\n\n".join(paragraphs))
    docs = list(S.LocalFiles(tmp_path / "book.txt").documents())
    assert len(docs) > 5 and all(len(d) <= S.DOC_CHARS for d in docs)
    assert "\n\n".join(docs) == "\n\n".join(paragraphs)


def test_hf_source_reads_local_files_and_saved_datasets(corpus_dir, tmp_path, articles):
    import datasets
    assert list(S.HFDataset(f"hf:{corpus_dir / 'more.jsonl'}").documents()) == [a["body"] for a in articles[60:90]]
    datasets.Dataset.from_dict({"text": ["one doc", "two doc"], "n": [1, 2]}).save_to_disk(str(tmp_path / "saved"))
    assert list(S.HFDataset(f"hf:{tmp_path / 'saved'}").documents()) == ["one doc", "two doc"]
    datasets.Dataset.from_dict({"body": ["x"]}).save_to_disk(str(tmp_path / "notext"))
    with pytest.raises(CorpusError, match="no 'text' field"):
        list(S.HFDataset(f"hf:{tmp_path / 'notext'}").documents())
    spec = S.HFDataset("hf:allenai/c4:en")
    assert (spec.dataset, spec.config) == ("allenai/c4", "en")


def test_hf_corpus_prepares_and_honours_max_documents(corpus_dir, tmp_path):
    pd = prepare_data(data_config(f"hf:{corpus_dir / 'more.jsonl'}", tmp_path, max_documents=20, holdout_fraction=0.0),
                      log=lambda *_: None)
    assert pd.manifest["sources"][0]["documents"] == 20 and len(pd.split("train")) > 0


def test_reserved_bbc_articles_never_reach_pretraining():
    arts = bbc_articles()
    assert len(arts) == 2225
    for label, n in Counter(a["label"] for a in arts).items():
        assert sum(a["reserved"] for a in arts if a["label"] == label) == n // 2
    # the reserved half is fixed: a change of the rule would silently move evaluation articles into pre-training
    reserved_ids = sorted(a["id"] for a in arts if a["reserved"])
    assert hashlib.sha256("\n".join(reserved_ids).encode()).hexdigest()[:12] == RESERVED_DIGEST
    reserved_bodies = {S.normalize(a["body"]) for a in arts if a["reserved"]}
    docs = list(S.BBCNews().documents())
    assert len(docs) > 1000
    assert not any(S.normalize(d.split("\n\n", 1)[1]) in reserved_bodies for d in docs)


RESERVED_DIGEST = "7aa9357b7977"


def test_missing_offline_sources_are_skipped_with_the_install_command(monkeypatch, tmp_path):
    monkeypatch.setattr(S.WordNet, "root", tmp_path / "no-wordnet")
    monkeypatch.setattr(S.Shakespeare, "ensure", lambda self, log: False)
    lines = []
    found, missing = usable_sources(DataConfig(), lines.append)
    assert "wordnet" not in [s.name for s in found] and "bbc-news" in [s.name for s in found]
    # Exactly the two hidden ones, plus whatever this machine lacks anyway (a fresh one: the Debian text).
    absent = {s.name for s in S.resolve_sources("offline-en") if not s.available()} - {"shakespeare"}
    assert {m["name"] for m in missing} == {"wordnet", "shakespeare"} | absent
    assert any("wordnet" in line and "apt-get install wordnet-base" in line for line in lines)
    hints = {m["name"]: m["fix"] for m in missing}
    assert all(hints[name].startswith("apt-get install") for name in absent)  # each says how to add it


# ------------------------------------------------------------------------------------------ corpus
def test_dedup_removes_exact_duplicates_after_whitespace_normalisation(prepared):
    stats = {s["name"]: s for s in prepared.manifest["sources"]}
    news = stats["news"]
    assert news["duplicates_removed"] == 1 and news["near_duplicates_removed"] == 0
    # one validation article is a follow-up story sharing over a fifth of its 13-word spans with a train one
    assert news["documents"] + sum(news["train_overlap_removed"].values()) == 60
    kept = sum(s["documents"] for s in stats.values())
    assert sum(prepared.manifest["splits"][s]["documents"] for s in SPLITS) == kept > 110


def test_split_is_by_document_hash_near_the_fractions_and_order_free(corpus_dir):
    texts = [f"document number {i}" for i in range(20000)]
    counts = Counter(split_of(t, 0, 0.1, 0.2, 0.05) for t in texts)
    assert abs(counts["holdout"] / 20000 - 0.2) < 0.015 and abs(counts["validation"] / 20000 - 0.1) < 0.012
    assert abs(counts["test"] / 20000 - 0.05) < 0.01
    assert Counter(split_of(t, 1, 0.1, 0.2) for t in texts) != counts  # the seed matters
    cfg = data_config(corpus_dir, "unused")
    sources = S.resolve_sources(str(corpus_dir))
    a, b = collect(sources, cfg, lambda *_: None), collect(sources[::-1], cfg, lambda *_: None)
    split_a = {text: s for s in SPLITS for _, text in a.docs[s]}
    assert split_a == {text: s for s in SPLITS for _, text in b.docs[s]}  # deterministic, not by position
    assert len(split_a) == sum(len(a.docs[s]) for s in SPLITS) == 119    # disjoint (one overlapped train)


# ------------------------------------------------------------------------------------------ tokenizer
def test_tokenizer_lowercases_and_strips_accents(prepared):
    tok = prepared.tokenizer
    assert tok.normalizer.normalize_str("Café ÉCOLE naïve") == "cafe ecole naive"
    assert tok.encode("The CAFÉ Minister").ids == tok.encode("the cafe minister").ids
    assert prepared.special == WP_SPECIAL and prepared.vocab_size <= 500
    cased, _ = tokenization.build_untrained(DataConfig(lowercase=False))
    assert cased.normalizer.normalize_str("Café") == "Café"


def test_unigram_tokenizer_has_t5_specials_and_descending_sentinels(corpus_dir, tmp_path):
    pd = prepare_data(data_config(corpus_dir, tmp_path, tokenizer="unigram", vocab_size=600), log=lambda *_: None,
                      packing=family("t5").packing)
    sp, tok = pd.special, pd.tokenizer
    assert (sp["pad"], sp["eos"], sp["unk"]) == (0, 1, 2) and "cls" not in sp
    assert pd.vocab_size == 600 and sp["sentinel_0"] == 599
    assert [tok.token_to_id(f"<extra_id_{k}>") for k in range(100)] == list(range(599, 499, -1))
    rows = pd.split("train").tokens
    assert len(set(rows[:, 0].tolist())) > 1 and (rows == sp["eos"]).any()  # no [CLS]-like prefix; </s> separates


# ------------------------------------------------------------------------------------------ shards
def test_shards_shape_dtype_and_unique_example_ids(prepared):
    total = 0
    all_ids = []
    for name in SPLITS:
        split = prepared.split(name)
        assert split.tokens.shape == (len(split), 64) and split.tokens.dtype == np.uint16
        assert isinstance(split.tokens, np.memmap)
        assert split.example_ids.dtype == np.int64 and split.source_ids.dtype == np.int16
        assert (split.tokens[:, 0] == WP_SPECIAL["cls"]).all()
        assert split.source_names == ["news", prepared.manifest["source_names"][1]]
        all_ids.append(np.asarray(split.example_ids))
        total += len(split)
    assert np.array_equal(np.sort(np.concatenate(all_ids)), np.arange(total))
    assert len(prepared.split("validation")) > 0 and len(prepared.split("holdout")) > 0


def test_packed_rows_hold_exactly_their_sources_documents(prepared, corpus_dir):
    """Undo the packing per source and compare with that source's encoded documents: no row mixes sources."""
    corpus = collect(S.resolve_sources(str(corpus_dir)), data_config(corpus_dir, "unused"), lambda *_: None)
    split = prepared.split("train")
    order = np.argsort(split.example_ids)
    for sid in range(2):
        rows = [split.tokens[i] for i in order if split.source_ids[i] == sid]
        stream = np.concatenate([r[1:] for r in rows])
        stream = stream[: len(stream) - np.argmax(stream[::-1] != WP_SPECIAL["pad"])]  # padding of the last row
        docs = encode(prepared.tokenizer, [t for s, t in corpus.docs["train"] if s == sid])
        assert stream.tolist() == [t for d in docs for t in d + [WP_SPECIAL["sep"]]]


def test_cache_hit_reuses_and_config_or_source_changes_give_new_roots(prepared, corpus_dir, cache, tmp_path):
    lines = []
    again = prepare_data(data_config(corpus_dir, cache), log=lines.append)
    assert again.root == prepared.root and lines == [f"data: cached {prepared.root}"]
    lines.clear()
    longer = prepare_data(data_config(corpus_dir, cache, seq_len=32), log=lines.append)
    assert longer.root != prepared.root and longer.split("train").tokens.shape[1] == 32
    assert any("tokenizer: cached" in line for line in lines)  # same train split and recipe: not retrained
    bigger = prepare_data(data_config(corpus_dir, cache, vocab_size=600), log=lambda *_: None)
    assert bigger.root not in (prepared.root, longer.root)
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "a.jsonl").write_text((corpus_dir / "more.jsonl").read_text())
    first = prepare_data(data_config(copy, cache), log=lambda *_: None).root
    with open(copy / "a.jsonl", "a") as f:
        f.write(json.dumps({"text": "An extra document about something new."}) + "\n")
    assert prepare_data(data_config(copy, cache), log=lambda *_: None).root != first


def test_interrupted_or_damaged_cache_is_rebuilt(corpus_dir, tmp_path):
    cfg = data_config(corpus_dir, tmp_path, seq_len=48)
    root = prepare_data(cfg, log=lambda *_: None).root
    reference = np.array(prepare_data(cfg, log=lambda *_: None).split("train").tokens)
    (root / MARKER).unlink()  # killed before the marker was written
    lines = []
    pd = prepare_data(cfg, log=lines.append)
    assert any("incomplete" in line for line in lines) and np.array_equal(pd.split("train").tokens, reference)
    with open(root / "train.tokens.npy", "r+b") as f:  # a truncated shard
        f.truncate(1000)
    assert np.array_equal(prepare_data(cfg, log=lambda *_: None).split("train").tokens, reference)


def test_missing_shards_and_unknown_split_are_clear_errors(corpus_dir, tmp_path):
    pd = prepare_data(data_config(corpus_dir, tmp_path, seq_len=40), log=lambda *_: None)
    (pd.root / "holdout.tokens.npy").unlink()
    with pytest.raises(CorpusError, match="holdout.*missing.*run prepare_data"):
        pd.split("holdout")
    with pytest.raises(CorpusError, match="unknown split 'dev'; choose one of train, validation, holdout, test"):
        pd.split("dev")


def test_corpus_errors_name_the_problem_and_fix(tmp_path):
    with pytest.raises(CorpusError, match="unknown corpus 'wikipedia'; use 'offline-en', a local file or folder"):
        prepare_data(data_config("wikipedia", tmp_path))
    with pytest.raises(CorpusError, match="corpus path /no/such/dir does not exist"):
        prepare_data(data_config("/no/such/dir", tmp_path))
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "blank.txt").write_text("  \n\n ")
    with pytest.raises(CorpusError, match="yielded no documents"):
        prepare_data(data_config(tmp_path / "empty", tmp_path))


# ------------------------------------------------------------------------------------------ masking
def sample_tokens(g: torch.Generator, b: int = 64, t: int = 128) -> torch.Tensor:
    tokens = torch.randint(5, 1000, (b, t), generator=g)
    tokens[:, 0] = WP_SPECIAL["cls"]
    tokens[:, 60] = WP_SPECIAL["sep"]
    tokens[:, 100:] = WP_SPECIAL["pad"]
    tokens[:, 30] = WP_SPECIAL["unk"]
    return tokens


def test_mask_tokens_rates_and_80_10_10():
    g = torch.Generator().manual_seed(0)
    chosen = eligible = masked = randomised = kept = 0
    for _ in range(40):
        tokens = sample_tokens(g)
        inputs, labels = mask_tokens(tokens, WP_SPECIAL, 1000, 0.15, g)
        sel = labels != -100
        assert torch.equal(labels[sel], tokens[sel])
        special = torch.isin(tokens, torch.tensor(list(WP_SPECIAL.values())))
        assert not (sel & special).any() and torch.equal(inputs[special], tokens[special])
        assert not torch.isin(inputs[sel & (inputs != 4)], torch.tensor(list(WP_SPECIAL.values()))).any()
        chosen, eligible = chosen + sel.sum().item(), eligible + (~special).sum().item()
        masked += (inputs[sel] == WP_SPECIAL["mask"]).sum().item()
        kept += (inputs[sel] == tokens[sel]).sum().item()
        randomised += ((inputs[sel] != tokens[sel]) & (inputs[sel] != WP_SPECIAL["mask"])).sum().item()
    assert abs(chosen / eligible - 0.15) < 0.005
    assert abs(masked / chosen - 0.8) < 0.015
    assert abs(randomised / chosen - 0.1) < 0.01 and abs(kept / chosen - 0.1) < 0.01


def test_mask_tokens_every_row_gets_a_target_and_is_deterministic():
    tokens = sample_tokens(torch.Generator().manual_seed(1), b=256)
    tokens[:, 1:100] = WP_SPECIAL["pad"]   # two eligible positions per row: the draw often picks none
    tokens[:, 1] = 7
    tokens[:, 50] = 9
    _, labels = mask_tokens(tokens, WP_SPECIAL, 1000, 0.15, torch.Generator().manual_seed(2))
    assert ((labels != -100).sum(1) >= 1).all()
    a = mask_tokens(tokens, WP_SPECIAL, 1000, 0.15, torch.Generator().manual_seed(3))
    b = mask_tokens(tokens, WP_SPECIAL, 1000, 0.15, torch.Generator().manual_seed(3))
    assert all(torch.equal(x, y) for x, y in zip(a, b))


# ------------------------------------------------------------------------------------------ batch stream
def test_batch_stream_epochs_are_permutations_and_batches_full():
    s = BatchStream(10, 4, seed=3)
    batches = [s.next() for _ in range(5)]
    assert all(len(b) == 4 and b.dtype == np.int64 for b in batches)
    flat = np.concatenate(batches)
    assert sorted(flat[:10]) == list(range(10)) and sorted(flat[10:20]) == list(range(10))
    assert not np.array_equal(flat[:10], flat[10:20]) and s.position == 20
    assert not np.array_equal(BatchStream(10, 10, seed=4).next(), flat[:10])


def test_batch_stream_resumes_exactly_from_a_position():
    s = BatchStream(37, 8, seed=11)
    for _ in range(6):
        s.next()
    resumed = BatchStream(37, 8, seed=11, position=s.position)
    for _ in range(12):  # across several epoch boundaries
        assert np.array_equal(s.next(), resumed.next())


@pytest.mark.parametrize("kind,vocab", [("wordpiece", 2048), ("unigram", 1000)])
def test_tokenizer_training_is_deterministic(kind, vocab):
    """Same train split -> byte-identical tokenizer (so the same shards and the same runs on a re-prepare)."""
    from lmbudget.data import bbc_articles
    from lmbudget.data.tokenizer import train as train_tokenizer
    texts = [a["body"] for a in bbc_articles()[:300]]
    cfg = DataConfig(tokenizer=kind, vocab_size=vocab)
    assert train_tokenizer(texts, cfg).to_str() == train_tokenizer(texts, cfg).to_str()


# ------------------------------------------------------------------------------------------ which split a run reads
@pytest.fixture(scope="module")
def run_cache(tmp_path_factory):
    """The data cache of this module's training runs (the conftest corpus, bert-micro), prepared once."""
    return tmp_path_factory.mktemp("run-cache")


def test_rho_loss_il_model_trains_on_holdout_rows_only_and_the_main_run_on_train_rows(corpus, run_cache, tmp_path,
                                                                                      monkeypatch):
    """The IL model must never have trained on a candidate it scores (Mindermann et al.): before the
    fix it trained on the train split in the main run's own order (20.7% of a demo run's candidates)."""
    from lmbudget.algorithms.rho_loss import IL_RECIPE, RhoLoss
    from lmbudget.context import RunContext
    from lmbudget.runs import make_config, train

    monkeypatch.setenv("LMBUDGET_HOME", str(tmp_path / "home"))
    drawn: dict[str, list] = {}
    original = RunContext.draw

    def spy(self, n):
        batch = original(self, n)
        drawn.setdefault(self.cfg.data.train_split, []).extend(batch.example_ids.tolist())
        return batch

    monkeypatch.setattr(RunContext, "draw", spy)
    cfg = make_config("bert-micro", "rho-loss", budget="4 steps", seed=0,
                      overrides=[f"data.corpus={corpus}", f"data.cache_dir={run_cache}", "train.threads=1",
                                 "algorithm.il_budget_fraction=1"])
    summary = train(cfg, tmp_path / "run", progress=False, log=lambda *_: None)
    assert summary["status"] == "completed" and IL_RECIPE >= 2
    data = prepare_data(cfg.data, log=lambda *_: None)
    ids = {s: set(data.split(s).example_ids.tolist()) for s in SPLITS}
    il_rows, candidates = set(drawn["holdout"]), set(drawn["train"])
    assert len(drawn["holdout"]) == 4 * cfg.train.batch and len(drawn["train"]) == 4 * 2 * cfg.train.batch
    assert il_rows <= ids["holdout"] and candidates <= ids["train"]
    assert not il_rows & candidates and summary["il_examples_scored"] == len(candidates)
    # a cached IL model of the old recipe (the same config, which already said holdout) is not reused
    il_cfg = RhoLoss({"il_budget_fraction": 1}).il_config(cfg)
    old_key = hashlib.sha256(json.dumps(il_cfg.to_dict(), sort_keys=True).encode()).hexdigest()[:16]
    assert il_cfg.data.train_split == "holdout" and Path(summary["il_run_dir"]).name != old_key


# ------------------------------------------------------------------------------------------ the final test loss
def test_per_token_test_loss_and_its_standard_error_match_a_simulation_with_known_truth():
    """Rows of 1-8 targets, a shared per-row effect (tokens of a row are correlated) and per-token noise:
    the estimate is unbiased for the per-token mean and its SE matches the spread over 2,000 replications."""
    from lmbudget.testloss import per_token_loss

    rng = np.random.default_rng(0)
    truth, estimates, ses = 3.0, [], []
    for _ in range(2000):
        counts = rng.integers(0, 9, size=300)   # a row without targets is left out
        noise = rng.normal(0, 2.0, size=300) / np.sqrt(np.maximum(counts, 1))  # the mean of c tokens' noise
        means = np.where(counts > 0, truth + rng.normal(0, 1.5, size=300) + noise, 99.0)
        mean, se, targets = per_token_loss(means, counts)
        assert targets == counts.sum()
        estimates.append(mean)
        ses.append(se)
    spread = np.std(estimates)
    assert abs(np.mean(estimates) - truth) < 4 * spread / np.sqrt(2000)
    assert 0.9 < np.mean(ses) / spread < 1.1
    naive = np.hypot(2.0, 1.5) / np.sqrt(300 * 4)  # iid tokens would claim this: the row effect makes it too small
    assert spread > 1.4 * naive
    mean, se, _ = per_token_loss([1.0, 3.0], [1, 3])
    assert mean == pytest.approx(2.5)           # per token (1 + 9) / 4, not per row (1 + 3) / 2


def test_a_resumed_run_writes_the_same_final_test_loss_as_an_uninterrupted_one(corpus, run_cache, tmp_path, monkeypatch):
    """On the holdout split (as RHO-loss's IL model trains), whose data order has a seed of its own:
    a resumed run continues that order, to the same weights and the same final test loss."""
    from lmbudget.conformance.runs import max_weight_difference, run_interrupted
    from lmbudget.runs import make_config, train

    monkeypatch.setenv("LMBUDGET_HOME", str(tmp_path / "home"))
    cfg = make_config("bert-micro", budget="6 steps", seed=0,
                      overrides=[f"data.corpus={corpus}", f"data.cache_dir={run_cache}", "train.threads=1",
                                 "train.checkpoint_every=0.3", "data.train_split=holdout"])
    whole = train(cfg, tmp_path / "whole", progress=False, log=lambda *_: None)
    run_interrupted(cfg, tmp_path / "cut", at_step=4)
    resumed = train(cfg, tmp_path / "cut", resume=True, progress=False, log=lambda *_: None)
    data = prepare_data(cfg.data, log=lambda *_: None)
    assert max_weight_difference(tmp_path / "whole", tmp_path / "cut") == 0
    assert whole["final_test_loss"] == resumed["final_test_loss"] and whole["final_test_loss_se"] > 0
    assert whole["test_targets"] == resumed["test_targets"] > 0
    assert len(data.split("test")) < cfg.train.test_rows  # the whole (small) test split was read
    assert whole["final_test_loss"] != whole["final_val_loss"]  # another split, per token, all of it


# ------------------------------------------------------------------------------------------ seen text
def test_downstream_tasks_on_pre_training_text_are_labelled_seen_text_in_notes_and_reports():
    """fortune-category and wordnet-gloss test on text of offline-en's train split: every report line
    listing them says so; bbc-topic (reserved from pre-training) is not labelled."""
    from types import SimpleNamespace

    from lmbudget.evaluate import tasks as T
    from lmbudget.results.verdict import protocol

    run = SimpleNamespace(evals={"probe": 0.5}, protocols={}, tasks={"probe": ["bbc-topic", "fortune-category",
                                                                               "wordnet-gloss"]})
    line = protocol(SimpleNamespace(runs=[run]), "probe")
    assert "bbc-topic, fortune-category (seen text" in line and "wordnet-gloss (seen text" in line
    assert "bbc-topic (seen" not in line
    # the texts really are in the train split: a fortune test text occurs verbatim in the Fortunes source
    fortunes = T.fortune_category()
    if fortunes is None:
        pytest.skip("fortunes is not installed")
    assert fortunes.note.startswith("seen text") and "bbc-topic" not in T.SEEN_TEXT
    source = {S.normalize(d) for d in S.Fortunes().documents()}
    test_texts = fortunes.evals["test"].a
    assert sum(S.normalize(t) in source for t in test_texts) > len(test_texts) / 2


# ------------------------------------------------------------------------------------------ hygiene
def hygiene_config(corpus) -> DataConfig:
    return data_config(corpus, "unused", validation_fraction=0.2, holdout_fraction=0.2, test_fraction=0.2)


def test_one_source_text_never_straddles_splits(tmp_path, articles):
    """Each .txt file is one unit: all the documents cut from it land in the same split."""
    for k in range(24):
        body = "\n\n".join(f"{a['headline']}\n{a['body']}" for a in articles[4 * k:4 * k + 4])
        (tmp_path / f"book{k}.txt").write_text(body)
    source = S.LocalFiles(tmp_path)
    units = {S.normalize(text): unit for unit, text in source.parts()}
    assert len(units) > 24 * 1.5  # files are cut into several documents
    corpus = collect([source], hygiene_config(tmp_path), lambda *_: None)
    split_of_unit: dict[str, set] = {}
    for split in SPLITS:
        for _, text in corpus.docs[split]:
            split_of_unit.setdefault(units[text], set()).add(split)
    assert all(len(s) == 1 for s in split_of_unit.values())
    assert len(set().union(*split_of_unit.values())) == 4   # and the files do spread over the four splits


def test_near_duplicates_and_evaluation_documents_overlapping_train_are_removed(tmp_path, articles):
    """A copy with a few words changed is a near duplicate (dropped wherever it lands); an evaluation
    document a third of whose 13-word spans are train text is dropped from its split; one with a
    single shared span (under LEAK_COVERAGE) stays."""
    from lmbudget.data.corpus import LEAK_COVERAGE, unit_key
    cfg = hygiene_config(tmp_path)
    bodies = [" ".join(a["body"].split()) for a in articles[:200]]
    bodies = [b for b in bodies if len(b.split()) > 150]
    split = {b: split_of(unit_key("c", None, b), cfg.split_seed, 0.2, 0.2, 0.2) for b in bodies}
    train = [b for b in bodies if split[b] == "train"]
    base, rest = train[0], [b for b in bodies if b != train[0]]
    words = base.split()
    near = " ".join(("changed" if i % 40 == 0 else w) for i, w in enumerate(words))
    third = len(words) // 3
    leaky = next(" ".join(words[:third]) + " " + r for r in rest
                 if split_of(" ".join(words[:third]) + " " + r, cfg.split_seed, 0.2, 0.2, 0.2) == "validation")
    shared = next(" ".join(words[:13]) + " " + r for r in rest[5:]
                  if split_of(" ".join(words[:13]) + " " + r, cfg.split_seed, 0.2, 0.2, 0.2) == "validation")
    variant = "\"" + base.upper() + "!\""  # the same words, another case and punctuation: an exact duplicate
    docs = [base, near, leaky, shared, variant] + [b for b in rest if b not in leaky and b not in shared][:40]
    with open(tmp_path / "docs.jsonl", "w") as f:
        f.writelines(json.dumps({"text": t}) + "\n" for t in docs)
    corpus = collect([S.LocalFiles(tmp_path / "docs.jsonl")], cfg, lambda *_: None)
    kept = {t for s in SPLITS for _, t in corpus.docs[s]}
    stats = corpus.stats[0]
    assert base in kept and near not in kept and stats["near_duplicates_removed"] == 1
    assert leaky not in kept and stats["train_overlap_removed"].get("validation", 0) >= 1
    assert shared in kept and 1 / len(shared.split()) < LEAK_COVERAGE
    assert variant not in kept and stats["duplicates_removed"] == 1
    assert len(kept) == len(docs) - 3


def test_rest_table_borders_are_stripped_and_their_cells_kept():
    table = ("Intro text.\n\n=====  ===========\nName   Meaning\n=====  ===========\n``a``  first\n"
             "=====  ===========\n\n+------+-----+\n| x    | y   |\n+======+=====+\n\n- a list item\n")
    text = S.normalize(S.PythonDocs.clean(table))
    assert "=" not in text and "+-" not in text
    assert text == "Intro text. Name Meaning a first | x | y | - a list item"


# ------------------------------------------------------------------------------------------ packing (the family's)
@pytest.mark.parametrize("name", ["bert", "t5", "gpt"])
def test_each_builtin_family_packs_by_its_formula(name):
    """BERT: [CLS] + the next seq_len - 1 tokens of doc [SEP] doc [SEP] ...; T5: seq_len tokens of doc </s> ...;
    GPT: seq_len tokens of doc <|endoftext|> ...; the last row padded. BERT's and T5's packings are the ones their
    tokenizers' data had before families chose them, so their data cache keys are unchanged; GPT keeps line breaks,
    which its key records."""
    from lmbudget.data.packing import pack
    from lmbudget.data.shards import FORMAT_PACKING, data_key
    from lmbudget.presets import preset_config

    fam, data = family(name), preset_config(f"{name}-micro").data
    special = {n: i for i, n in enumerate(tokenization.special_names(data.tokenizer))}
    rng = np.random.default_rng(0)
    docs = [rng.integers(10, 100, rng.integers(1, 30)).tolist() for _ in range(12)]
    length = 16
    separator, opening = {"bert": ("sep", [special.get("cls")]), "t5": ("eos", []), "gpt": ("eos", [])}[name]
    stream = [t for d in docs for t in d + [special[separator]]]
    body = length - len(opening)
    chunks = [stream[i:i + body] for i in range(0, len(stream), body)]
    chunks[-1] = chunks[-1] + [special["pad"]] * (body - len(chunks[-1]))
    assert pack(docs, length, special, fam.packing).tolist() == [opening + c for c in chunks]
    assert fam.packing.lines == (name == "gpt")
    assert ("packing" in data_key(data, [], fam.packing)[1]) == fam.packing.lines
    assert (fam.packing == FORMAT_PACKING[data.tokenizer]) != fam.packing.lines


class SepOnlyBert(BertFamily):
    """BERT's objective on rows without [CLS] whose documents keep their line breaks: another packing on wordpiece."""
    name = "sep-only-bert"
    packing = Packing(separator="sep", lines=True)


class EosBert(BertFamily):
    name = "eos-bert"
    packing = Packing(separator="eos")


def test_a_plugin_family_gets_its_own_packing_with_the_wordpiece_tokenizer(corpus, tmp_path, monkeypatch):
    from lmbudget.evaluate.pretrained import load_run
    from lmbudget.runs import make_config, train

    monkeypatch.setenv("LMBUDGET_HOME", str(tmp_path / "home"))
    cfg = make_config("bert-micro", budget="1 steps", overrides=[f"data.corpus={corpus}", "train.eval_every=2",
                                                                 "model.family=test_data:SepOnlyBert"])
    assert cfg.data.tokenizer == "wordpiece"
    assert train(cfg, tmp_path / "run", progress=False, log=lambda *_: None)["status"] == "completed"
    data = load_run(tmp_path / "run").data
    rows = np.asarray(data.split("train").tokens)
    assert data.manifest["config"]["packing"] == {"separator": "sep", "row_start": [], "lines": True}
    assert (rows == WP_SPECIAL["sep"]).any() and not (rows == WP_SPECIAL["cls"]).any()  # no [CLS] anywhere
    bert = prepare_data(cfg.data, log=lambda *_: None, packing=family("bert").packing)
    assert bert.root != data.root and (np.asarray(bert.split("train").tokens)[:, 0] == WP_SPECIAL["cls"]).all()
    with pytest.raises(ConfigError, match=r"model.family=test_data:EosBert packs documents with the special "
                                          r"token\(s\) eos, which data.tokenizer=wordpiece lacks") as e:
        make_config("bert-micro", overrides=["model.family=test_data:EosBert"])
    assert "\n" not in str(e.value)


def test_line_breaks_are_kept_where_the_family_asks_and_the_splits_stay_the_same(corpus_dir):
    """Packing.lines keeps every line break (blank-line runs made one blank line; spaces within a line
    collapsed); the documents land in the same splits either way, only their layout differs."""
    from lmbudget.data.packing import normalize_lines
    raw = "  Title \r\n\n\n\n a  body\tline\n  second  \n\n"
    assert normalize_lines(raw) == "Title\n\na body line\nsecond" and S.normalize(raw) == "Title a body line second"
    sources = S.resolve_sources(str(corpus_dir))
    cfg = data_config(corpus_dir, "unused")
    flat = collect(sources, cfg, lambda *_: None)
    lines = collect(sources, cfg, lambda *_: None, clean=SepOnlyBert.packing.text)
    assert any("\n" in t for _, t in lines.docs["train"]) and not any("\n" in t for _, t in flat.docs["train"])
    for split in SPLITS:
        assert [(s, S.normalize(t)) for s, t in lines.docs[split]] == flat.docs[split]
    assert lines.checksums["train"] != flat.checksums["train"]  # another text: another tokenizer and cache key
