"""The gpt family against its reference (transformers' LlamaForCausalLM), its objective against the formula,
its export round trip, and the core's walls a causal-LM plug-in family hit (tests/kit_plugins/causal.py)."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lmbudget.config import ConfigError
from lmbudget.families import family
from lmbudget.families.base import PARAMETER_ROLES
from lmbudget.presets import preset_config
from lmbudget.runs import make_config

sys.path.insert(0, str(Path(__file__).parent))

transformers = pytest.importorskip("transformers")
PLUGIN = "kit_plugins.causal:Causal"


def micro_model(tie: bool = True, seed: int = 0):
    cfg = preset_config("gpt-micro").model
    cfg.vocab_size, cfg.tie_embeddings = 512, tie
    fam = family("gpt")
    torch.manual_seed(seed)
    model = fam.build(cfg, fam.synthetic_special(512))
    with torch.no_grad():  # norms away from 1, so a misplaced norm weight would show
        for p in model.parameters():
            if p.dim() == 1:
                p.uniform_(0.5, 1.5)
    return fam, cfg, model.eval()


def as_llama(fam, cfg, model):
    hf = fam.transformers_model(cfg)
    state = {k if k == "lm_head.weight" else f"model.{k}": v for k, v in model.state_dict().items()}
    missing, unexpected = hf.load_state_dict(state, strict=False)
    assert not unexpected and missing == ([] if not cfg.tie_embeddings else ["lm_head.weight"])
    return hf.eval()


@pytest.mark.parametrize("tie", [True, False])
def test_gpt_is_llama_weight_for_weight(tie):
    fam, cfg, model = micro_model(tie)
    hf = as_llama(fam, cfg, model)
    ids = torch.randint(3, 512, (3, 40), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert (model.logits(ids) - hf(input_ids=ids).logits).abs().max() < 1e-4
        assert torch.allclose(model({"input_ids": ids, "labels": ids}), hf(input_ids=ids, labels=ids).loss, atol=1e-5)
        ours = model.generate(ids[:, :6], max_new_tokens=6, eos_id=10**6)
        theirs = hf.generate(ids[:, :6], max_new_tokens=6, do_sample=False, eos_token_id=None)[:, 6:].tolist()
    assert ours == theirs
    assert (model.head_weight() is model.embed_tokens.weight) == tie


def test_next_token_loss_and_per_sequence_losses_follow_the_formula():
    fam, cfg, model = micro_model()
    tokens = torch.randint(3, 512, (4, 20), generator=torch.Generator().manual_seed(2))
    special = fam.synthetic_special(512)
    tokens[1, 12:] = special["pad"]  # padding: predicts nothing
    inputs = fam.make_inputs(tokens, None, special, 512, torch.Generator())
    with torch.no_grad():
        logits = model.logits(tokens)[:, :-1]
        per_token = F.cross_entropy(logits.transpose(1, 2), inputs["labels"][:, 1:], reduction="none", ignore_index=-100)
        counts = (inputs["labels"][:, 1:] != -100).sum(1)
        assert counts.tolist() == [19, 11, 19, 19] == fam.validation_weights(inputs).tolist()
        assert torch.allclose(model(inputs), per_token.sum() / counts.sum(), atol=1e-6)
        assert torch.allclose(model(inputs, per_example=True), per_token.sum(1) / counts, atol=1e-6)
        assert torch.equal(model.encode(tokens), model.hidden_states(tokens))
        hessian = model.hessian_loss(inputs, torch.Generator().manual_seed(0))  # labels sampled from the logits
    assert hessian.isfinite() and hessian.dim() == 0
    with pytest.raises(ValueError, match="max_seq_len"):
        model.logits(torch.zeros(1, cfg.max_seq_len + 1, dtype=torch.long))


@pytest.mark.parametrize("tie", [True, False])
def test_parameter_roles(tie):
    fam, cfg, model = micro_model(tie)
    roles = fam.parameter_roles(model)
    assert set(roles) == {n for n, _ in model.named_parameters()} and set(roles.values()) <= set(PARAMETER_ROLES)
    assert roles["embed_tokens.weight"] == "embedding" and ("lm_head.weight" in roles) == (not tie)
    for name, p in model.named_parameters():
        assert (roles[name] == "hidden_matrix") == (p.dim() == 2 and name.startswith("layers."))
        assert (roles[name] == "vector") == (p.dim() == 1)


def test_family_defaults_are_its_own_not_berts():
    gpt = make_config("gpt-micro")
    assert gpt.model.norm_eps == 1e-5 and type(gpt.model).__name__ == "GPTConfig"
    assert (gpt.optim.weight_decay, gpt.optim.clip, gpt.optim.eps) == (0.1, 1.0, 1e-8)
    # Another family's preset switched to GPT: GPT's own defaults, and GPT's optimizer settings, taken after the switch.
    # (with a tokenizer that has GPT's separator: GPT packs documents with an eos, which wordpiece lacks)
    switched = make_config("bert-micro", overrides=["model.family=gpt", "data.tokenizer=bpe"])
    assert switched.model.norm_eps == 1e-5 and switched.model.hidden == 64
    assert (switched.optim.weight_decay, switched.optim.clip, switched.optim.eps) == (0.1, 1.0, 1e-8)
    assert make_config("bert-micro").model.norm_eps == 1e-12  # BERT keeps its own


def test_a_plugin_family_finds_its_presets_and_defaults():
    with pytest.raises(ConfigError, match="unknown model 'causal-micro'"):
        make_config("causal-micro")
    cfg = make_config("causal-micro", overrides=[f"model.family={PLUGIN}"])
    assert cfg.model.family == PLUGIN and cfg.model.norm_eps == 3e-6 and cfg.optim.weight_decay == 0.05
    # Explicit values still win over the family's defaults.
    assert make_config("causal-micro", overrides=[f"model.family={PLUGIN}", "model.norm_eps=1e-4",
                                                  "optim.weight_decay=0.3"]).optim.weight_decay == 0.3


def test_check_plugin_refuses_a_family_with_nothing_to_run():
    from lmbudget.conformance import check, micro_presets
    assert micro_presets(PLUGIN) == ["causal-micro"] and micro_presets("gpt") == ["gpt-micro"]
    with pytest.raises(ConfigError, match="no \\*-micro preset"):
        check("kit_plugins.causal:NoMicro", kind="model")


def test_batch_carries_every_key_into_training(corpus, tmp_path):
    """The plug-in's model refuses a batch without its ``positions``: training and validation both reach it."""
    from lmbudget.runs import train
    cfg = make_config("causal-micro", budget="3 steps", reference="cpu2-gpt-micro",
                      overrides=[f"model.family={PLUGIN}", f"data.corpus={corpus}", "train.eval_every=0.5"])
    summary = train(cfg, tmp_path / "run", progress=False, log=lambda *_: None)
    assert summary["status"] == "completed" and summary["steps"] == 3


def test_batch_select_split_cat_keep_extra_keys():
    from lmbudget.algorithms.base import Batch
    ids = torch.arange(12).view(6, 2)
    batch = Batch.from_inputs({"input_ids": ids, "labels": ids + 1, "positions": ids * 10}, torch.arange(6))
    parts = batch.split(4)
    assert [len(p) for p in parts] == [4, 2] and torch.equal(Batch.cat(parts).extra["positions"], ids * 10)
    picked = batch.select(torch.tensor([5, 0]))
    assert torch.equal(picked.model_inputs()["positions"], torch.stack([ids[5], ids[0]]) * 10)


def test_cost_table_signature_is_checked_both_ways():
    from lmbudget.clock import ClockError, load_reference
    table = load_reference("cpu2-bert-micro")
    table.check_matches(dict(table.signature), table.seq_len)
    with pytest.raises(ClockError, match="signature"):
        table.check_matches({}, table.seq_len)
    with pytest.raises(ClockError, match="ffn"):
        table.check_matches({k: v for k, v in table.signature.items() if k != "ffn"}, table.seq_len)
    with pytest.raises(ClockError, match="extra"):
        table.check_matches(dict(table.signature, extra=1), table.seq_len)


# ----------------------------------------------------------------------------- export

def test_export_loads_in_transformers_with_the_same_logits(gpt_run, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    from lmbudget.evaluate.pretrained import load_run
    from lmbudget.export import export_run
    out = export_run(gpt_run, tmp_path / "hf", log=lambda *_: None)
    hf, tok = AutoModelForCausalLM.from_pretrained(out).eval(), AutoTokenizer.from_pretrained(out)
    assert type(hf).__name__ == "LlamaForCausalLM" and GenerationConfig.from_pretrained(out).do_sample is False
    run = load_run(gpt_run)
    text = "The government said on Monday that the plans would go ahead.\nA second line."
    ids = run.data.tokenizer.encode(text, add_special_tokens=False).ids
    assert tok(text)["input_ids"] == ids and tok.eos_token_id == run.data.special["eos"]
    with torch.no_grad():
        ours = run.model().eval().logits(torch.tensor([ids]))
        theirs = hf(input_ids=torch.tensor([ids])).logits
    assert (ours - theirs).abs().max() < 1e-4
    assert "final checkpoint" in (out / "README.md").read_text()


def test_export_refuses_bad_input_and_overwrites_nothing(gpt_run, tmp_path):
    import shutil

    from lmbudget.export import ExportError, export_run
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "keep.txt").write_text("mine")
    with pytest.raises(ExportError, match="not empty"):
        export_run(gpt_run, taken)
    assert [p.name for p in taken.iterdir()] == ["keep.txt"]
    with pytest.raises(ExportError, match="not a run directory"):
        export_run(tmp_path / "nothing", tmp_path / "out")
    unfinished = tmp_path / "unfinished"
    shutil.copytree(gpt_run, unfinished)
    (unfinished / "summary.json").unlink()
    with pytest.raises(ExportError, match="--allow-unfinished"):
        export_run(unfinished, tmp_path / "out")
    assert not (tmp_path / "out").exists() and [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    out = export_run(unfinished, tmp_path / "out", allow_unfinished=True, log=lambda *_: None)
    assert "UNFINISHED" in (out / "README.md").read_text()


def test_t5_export_is_umt5_with_the_same_logits_and_greedy_outputs(t5_run, tmp_path):
    """Our T5 (a relative position bias in every block) is UMT5's layout: the export loads with
    AutoModelForSeq2SeqLM, keeps the untied head, and gives our logits (padded encoder row included) and our
    greedy outputs."""
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    from lmbudget.evaluate.pretrained import load_run
    from lmbudget.export import export_run
    out = export_run(t5_run, tmp_path / "hf", log=lambda *_: None)
    hf, tok = AutoModelForSeq2SeqLM.from_pretrained(out).eval(), AutoTokenizer.from_pretrained(out)
    assert type(hf).__name__ == "UMT5ForConditionalGeneration" and "UMT5ForConditionalGeneration" in (
        out / "README.md").read_text()
    run = load_run(t5_run)
    model, special = run.model().eval(), run.data.special
    assert not torch.equal(hf.lm_head.weight, hf.shared.weight)  # the head stays untied (v1.1)
    texts = ["The government said on Monday that the plans would go ahead.", "Shares fell."]
    ids = [run.data.tokenizer.encode(t).ids for t in texts]
    assert tok(texts[0])["input_ids"] == ids[0] and ids[0][-1] == special["eos"] == tok.eos_token_id
    width = max(map(len, ids))
    inputs = torch.tensor([i + [special["pad"]] * (width - len(i)) for i in ids])
    mask = (torch.arange(width)[None] < torch.tensor([[len(i)] for i in ids])).long()
    labels = torch.randint(5, 500, (2, 6), generator=torch.Generator().manual_seed(0))
    dec_in = torch.cat([labels.new_full((2, 1), special["pad"]), labels[:, :-1]], dim=1)
    with torch.no_grad():
        ours = model.lm_head(model.decoder_norm(model.target_hidden(
            {"input_ids": inputs, "labels": labels, "attention_mask": mask})))
        theirs = hf(input_ids=inputs, attention_mask=mask, decoder_input_ids=dec_in).logits
        assert (ours - theirs).abs().max() < 1e-4
        mine = model.generate(inputs, mask, max_new_tokens=8, eos_id=special["eos"])
        greedy = hf.generate(input_ids=inputs, attention_mask=mask, max_new_tokens=8)
    assert sum(map(len, mine)) >= 4, mine  # something was generated
    for row, theirs_row in zip(mine, greedy.tolist()):
        theirs_row = theirs_row[1:]  # after the decoder start (pad); up to the eos
        assert row == theirs_row[:theirs_row.index(special["eos"])] if special["eos"] in theirs_row else (
            row == [t for t in theirs_row if t != special["pad"]]), (row, theirs_row)


@pytest.mark.parametrize("name, why", [("bert", "gated FFN")])
def test_families_without_an_exact_counterpart_refuse_export(name, why, tmp_path):
    with pytest.raises(NotImplementedError, match=why) as e:
        family(name).export(None, None, None, {}, tmp_path)
    assert "\n" not in str(e.value) and not any(tmp_path.iterdir())


def test_export_cli_is_one_line_exit_2(tmp_path):
    import subprocess
    proc = subprocess.run([sys.executable, "-m", "lmbudget", "export", str(tmp_path), "--format", "hf", "--out",
                           str(tmp_path / "out")], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "not a run directory" in proc.stderr


# ----------------------------------------------------------------------------- llm.c shards

def write_shard(path: Path, tokens, magic: int = 20240520, count: int | None = None) -> Path:
    import numpy as np
    header = np.zeros(256, dtype="<i4")
    header[:3] = magic, 1, len(tokens) if count is None else count
    path.write_bytes(header.tobytes() + np.asarray(tokens, dtype="<u2").tobytes())
    return path


@pytest.fixture()
def shards(tmp_path):
    import numpy as np
    rng = np.random.default_rng(0)
    root = tmp_path / "fineweb10B"
    root.mkdir()
    for i in (1, 2):
        write_shard(root / f"fineweb_train_{i:06d}.bin", rng.integers(0, 2048, 64 * 40 + 17))
    write_shard(root / "fineweb_val_000000.bin", rng.integers(0, 2048, 64 * 10))
    return root


def test_llmc_shards_are_memory_mapped_rows(shards):
    import numpy as np

    from lmbudget.data import prepare_data
    from lmbudget.data.llmc import read_shard
    cfg = make_config("gpt-micro", overrides=[f"data.corpus=llmc:{shards}", "data.seq_len=64"]).data
    data = prepare_data(cfg, log=lambda *_: None)
    train, val = data.split("train"), data.split("validation")
    assert len(train) == 80 and len(val) == 10 and data.vocab_size == 2048  # 40 whole rows per shard
    assert all(isinstance(s, np.memmap) for s in train.tokens.shards)
    second = read_shard(shards / "fineweb_train_000002.bin")
    assert np.array_equal(train.tokens[[40, 79]], np.stack([second[:64], second[39 * 64:40 * 64]]))
    assert np.array_equal(val.tokens[:2].reshape(-1), read_shard(shards / "fineweb_val_000000.bin")[:128])


def test_llmc_corpus_trains(shards, tmp_path):
    from lmbudget.runs import train
    cfg = make_config("gpt-micro", budget="3 steps", overrides=[f"data.corpus=llmc:{shards}", "train.eval_every=2"])
    summary = train(cfg, tmp_path / "run", progress=False, log=lambda *_: None)
    assert summary["status"] == "completed" and summary["final_val_loss"] > 0


@pytest.mark.parametrize("damage, message", [
    ("magic", "magic number 123"), ("truncated", "truncated"), ("vocabulary", "token id 4000"),
    ("no-validation", "no validation shard")])
def test_llmc_bad_shards_are_one_line_errors_naming_the_file(shards, damage, message):
    from lmbudget.data import CorpusError, prepare_data
    bad = shards / "fineweb_train_000001.bin"
    if damage == "magic":
        write_shard(bad, [1, 2, 3], magic=123)
    elif damage == "truncated":
        write_shard(bad, [1, 2, 3], count=1000)
    elif damage == "vocabulary":
        write_shard(bad, [1, 4000, 3])
    else:
        bad = shards / "fineweb_val_000000.bin"
        bad.unlink()
    cfg = make_config("gpt-micro", overrides=[f"data.corpus=llmc:{shards}"]).data
    with pytest.raises(CorpusError, match=message) as e:
        prepare_data(cfg, log=lambda *_: None)
    assert "\n" not in str(e.value) and (str(bad) in str(e.value) or str(shards) in str(e.value))


def test_sequence_longer_than_the_positions_is_refused():
    with pytest.raises(ConfigError, match="model.max_seq_len"):
        make_config("gpt-micro", overrides=["data.seq_len=128"])


# ----------------------------------------------------------------------------- byte-level BPE

BPE_SCRIPT = """
import hashlib, sys
from pathlib import Path
from lmbudget.data.bpe import train_bpe
texts = [p.read_text() for p in sorted(Path(sys.argv[1]).glob('*.txt'))[:150]]
print(hashlib.sha256(train_bpe(texts, 1024).to_str().encode()).hexdigest())
"""


def test_bpe_is_deterministic_across_processes_and_byte_exact(corpus):
    import subprocess

    from lmbudget.data.bpe import bpe_special_ids, train_bpe
    digests = {subprocess.run([sys.executable, "-c", BPE_SCRIPT, str(corpus)], capture_output=True, text=True,
                              check=True).stdout for _ in range(2)}
    assert len(digests) == 1
    tok = train_bpe([p.read_text() for p in sorted(corpus.glob("*.txt"))[:150]], 1024)
    assert tok.get_vocab_size() == 1024 and bpe_special_ids(tok) == {"eos": 0, "pad": 1}
    text = "Line one\n\n  Ünïcödé → text the model never saw: 日本"
    assert tok.decode(tok.encode(text).ids) == text  # bytes: nothing is unknown, layout kept


# ----------------------------------------------------------------------------- the kit counts the work itself

def test_charged_passes_counts_block_work_by_any_route(corpus):
    """Extra examples encoded outside ``forward()`` are caught; honest layer dropping (fractional cost keys
    on T5's two stacks) and Sophia's Hessian passes through ``hessian_loss`` are not flagged."""
    from lmbudget.conformance import check
    results = check(["kit_plugins.sneaky:EncodePeek", "layer-dropping", "sophia"], presets=["bert-micro", "t5-micro"],
                    checks=["charged-passes"], corpus=corpus, budgets={"bert-micro": "0.3s", "t5-micro": "0.4s"},
                    overrides={"sophia": ["optim.hessian_every=2"]})
    verdicts = {(r.plugin, r.preset): r for r in results}
    for preset in ("bert-micro", "t5-micro"):
        sneaky = verdicts[("kit_plugins.sneaky:EncodePeek", preset)]
        assert not sneaky.passed and "uncharged" in sneaky.why, sneaky.why
        for honest in ("layer-dropping", "sophia"):
            assert verdicts[(honest, preset)].passed, verdicts[(honest, preset)].why


# ----------------------------------------------------------------------------- zero-shot

def test_continuation_logprobs_follow_the_formula():
    from lmbudget.evaluate.zeroshot import choose, continuation_logprobs
    fam, cfg, model = micro_model()
    prompt, candidates = [5, 9, 17, 33, 2], [[40], [41, 42, 43], [44, 45]]
    got = continuation_logprobs(model, prompt, candidates, max_len=cfg.max_seq_len)
    for k, c in enumerate(candidates):  # each candidate alone: log p(c_j | prompt, c_<j), summed
        with torch.no_grad():
            logp = F.log_softmax(model.logits(torch.tensor([prompt + c])), -1)[0]
        assert torch.allclose(got[k], sum(logp[len(prompt) - 1 + j, t] for j, t in enumerate(c)), atol=1e-5)
    cut = continuation_logprobs(model, list(range(3, 200)), candidates, max_len=cfg.max_seq_len)  # left-truncated
    assert cut.isfinite().all()
    raw, norm = choose(torch.tensor([[-3.0, -4.0]]).numpy(), torch.tensor([1.0, 4.0]).numpy())
    assert raw.tolist() == [0] and norm.tolist() == [1]  # -4 over 4 bytes beats -3 over 1


def test_zeroshot_suite_reports_against_random_and_unigram(gpt_run):
    from lmbudget.evaluate import evaluate
    result = evaluate(gpt_run, "zeroshot", tasks=["bbc-topic"], max_eval=25, progress=False, log=lambda *_: None)
    task = result["tasks"]["bbc-topic"]
    assert task["main_metric"] == "accuracy_norm" and task["sizes"] == {"test": 25}
    assert 0 <= task["metrics"]["accuracy_norm"]["mean"] <= 100
    assert task["baselines"]["random"]["accuracy"] == pytest.approx(20.0)  # 5 BBC topics
    assert set(result["baselines"]) == {"random", "unigram"}
    from lmbudget.evaluate import EvalError
    with pytest.raises(EvalError, match="not available for a bert run|unknown"):
        evaluate(gpt_run.parent / "nothing", "zeroshot-typo")


def fake_wordnet(root: Path) -> Path:
    """WordNet's data files in its own format (offset, lexicographer file, type, hex word count, words; '|' gloss):
    20 nouns of two lemmas each, 6 verbs, 2 adjectives, 1 adverb."""
    root.mkdir()
    counts = {"noun": 20, "verb": 6, "adj": 2, "adv": 1}
    for pos, n in counts.items():
        lines = ["  1 This software and database is being provided (licence header)"]
        for k in range(n):
            words = f"02 {pos}{k}a 0 {pos}_{k}b 0" if pos == "noun" else f"01 {pos}{k}a 0"
            lines.append(f"{k:08d} 05 {pos[0]} {words} 000 | the meaning of {pos} number {k}; \"an example\"")
        (root / f"data.{pos}").write_text("\n".join(lines) + "\n")
    return root


def test_wordnet_word_task_offers_the_defined_word_among_four(tmp_path, monkeypatch):
    from lmbudget.data import sources as S
    from lmbudget.evaluate.zeroshot import choose, wordnet_word
    monkeypatch.setattr(S.WordNet, "root", fake_wordnet(tmp_path / "wordnet"))
    task = wordnet_word(n=25)
    assert len(task) == 25 and len(set(task.prompts)) == 25
    for prompt, candidates, answer in zip(task.prompts, task.candidates, task.answers):
        pos, k = prompt.split(" number ")[0].split()[-1], int(prompt.split(" number ")[1].split("\n")[0])
        assert prompt == f"the meaning of {pos} number {k}\nWord:"  # the definition without its example
        lemmas = {f" {pos}{k}a", f" {pos} {k}b"}  # WordNet's underscores are spaces
        others = [c for i, c in enumerate(candidates) if i != answer]
        assert len(set(candidates)) == 4 and candidates[answer] in lemmas and not lemmas & set(others)
        if pos == "noun":  # enough nouns: the distractors are nouns too
            assert all(c.startswith(" noun") for c in others)
    assert sorted(set(task.answers.tolist())) == [0, 1, 2, 3]  # the right answer's place is random
    assert wordnet_word(n=25).answers.tolist() == task.answers.tolist()  # seeded
    raw, norm = choose(np.array([[-3.0, -4.0], [-1.0, -5.0]]), np.array([[1.0, 4.0], [1.0, 10.0]]))
    assert raw.tolist() == [0, 0] and norm.tolist() == [1, 1]  # per example lengths: -4/4 > -3/1, -5/10 > -1/1
    monkeypatch.setattr(S.WordNet, "root", tmp_path / "absent")
    assert wordnet_word() is None


def test_zeroshot_wordnet_is_seen_text_where_the_run_trained_on_wordnet(gpt_run, tmp_path, monkeypatch):
    from lmbudget.data import sources as S
    from lmbudget.evaluate.pretrained import load_run
    from lmbudget.evaluate.zeroshot import zeroshot_suite
    monkeypatch.setattr(S.WordNet, "root", fake_wordnet(tmp_path / "wordnet"))
    run = load_run(gpt_run)

    def suite():
        return zeroshot_suite(run, "zeroshot", [0], ["wordnet-word"], None, None, 0, 20, "cpu", False,
                              lambda *_: None)["tasks"]["wordnet-word"]
    task = suite()
    assert task["sizes"] == {"test": 20} and task["baselines"]["random"]["accuracy_norm"] == pytest.approx(25.0)
    assert {"accuracy", "accuracy_norm"} <= set(task["baselines"]["unigram"]) and "seen text" not in task["note"]
    run.data.manifest = dict(run.data.manifest, source_names=[*run.data.manifest["source_names"], "wordnet"])
    assert suite()["note"].startswith("seen text")
    monkeypatch.setattr(S.WordNet, "root", tmp_path / "absent")
    body = zeroshot_suite(run, "zeroshot", [0], ["wordnet-word"], None, None, 0, 20, "cpu", False, lambda *_: None)
    assert body["tasks"] == {} and "apt-get install wordnet-base" in body["skipped"]["wordnet-word"]


def test_a_family_ships_named_reference_tables():
    from lmbudget.clock import ClockError, load_reference
    table = load_reference("causal-micro-table", PLUGIN)
    assert table.name == "causal-micro-table" and table.signature["arch"] == "gpt"
    with pytest.raises(ClockError, match="unknown reference 'causal-micro-table'"):
        load_reference("causal-micro-table")  # no registry lists the plug-in: only through its family
