"""The model-family contract: everything that differs between BERT, T5 and a new architecture.

The training loop, calibration, validation loss and evaluation ask the family (never the
architecture's name) for: the model, the objective's inputs from raw token rows, the paper
settings of the optimizers and algorithms on this family, and which fine-tuning harness its
evaluation suites use. A new family is one module here (or in your own package, registered by
the ``lmbudget.models`` entry point) plus its presets; nothing else changes.

The model a family builds is an ``nn.Module`` with::

    layers: nn.ModuleList         # every block, in the order algorithms index them
    stacks: list[list[int]]       # the blocks of each stack (one for an encoder, two for T5)
    signature() -> dict           # what its cost table is keyed by ("arch", "n_layers", "hidden", ...)
    forward(batch, active=None, per_example=False)   # mean loss, or per-example (B,) without reduction
    encode(input_ids, active=None, attention_mask=None) -> (B, T, H)   # final hidden states (probes)
    hessian_loss(batch, generator, active=None)      # optional: Sophia's sampled-label loss
    generate(input_ids, attention_mask=None, *, max_new_tokens, eos_id) -> list[list[int]]
                                  # optional: greedy outputs without the eos (text-to-text suites)
"""
from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from lmbudget.config import ModelConfig
from lmbudget.data.packing import BERT_PACKING, Packing

# What an optimizer that treats parameters differently (Muon) is told about each one.
PARAMETER_ROLES = ("hidden_matrix", "embedding", "head", "vector")


class ModelFamily:
    name: ClassVar[str]
    Config: ClassVar[type[ModelConfig]] = ModelConfig
    objective: ClassVar[str] = ""                      # one line for listings
    # Named presets: {"model": {...}, "data": {...}, "optim": {...}, "train": {...}, "lr_scale": x}.
    presets: ClassVar[dict[str, dict]] = {}
    # The paper's settings per optimizer name on this family (OptimConfig keys), and per algorithm name.
    optimizer_defaults: ClassVar[dict[str, dict]] = {}
    algorithm_defaults: ClassVar[dict[str, dict]] = {}
    # Named cost tables the family ships: name -> JSON file beside the family's module (``train.reference=NAME``).
    references: ClassVar[dict[str, str]] = {}
    # Evaluation suite -> "module:function" running it on a PretrainedRun (see lmbudget.evaluate).
    suites: ClassVar[dict[str, str]] = {}
    # How documents become packed rows: the separator after each document, the tokens opening each row, and
    # whether text keeps its line breaks (lmbudget.data.packing); its special tokens must be the tokenizer's.
    packing: ClassVar[Packing] = BERT_PACKING

    def build(self, cfg: ModelConfig, special: dict) -> nn.Module:
        raise NotImplementedError

    def make_inputs(self, tokens: torch.Tensor, cfg, special: dict, vocab_size: int,
                    generator: torch.Generator) -> dict:
        """The objective's model inputs (``input_ids``, ``labels``, ...) from raw token rows (B, T), with
        ``cfg`` the run's RunConfig (the objective's settings: ``cfg.data``, the family's own ``cfg.model``
        keys); deterministic given ``generator``."""
        raise NotImplementedError

    def to_transformers(self, model: nn.Module, cfg: ModelConfig, tokenizer, special: dict) -> tuple:
        """The model as its exact ``transformers`` counterpart, in memory: ``(PreTrainedModel`` with its generation
        config, ``PreTrainedTokenizerFast)`` (``lmbudget.export.hf_tokenizer``), on the CPU in fp32. ``export``
        saves them; ``--suite lm-eval`` evaluates them. A family without an exact counterpart raises
        NotImplementedError with one line saying why."""
        raise NotImplementedError(f"the {self.name} family has no exact transformers counterpart to export to")

    def export(self, model: nn.Module, cfg: ModelConfig, tokenizer, special: dict, out_dir) -> None:
        """Write :meth:`to_transformers`'s model and tokenizer in ``out_dir`` (``lmbudget export`` adds the README)."""
        hf_model, hf_tokenizer = self.to_transformers(model, cfg, tokenizer, special)
        hf_model.save_pretrained(out_dir)
        hf_tokenizer.save_pretrained(str(out_dir))

    def transformers_model(self, cfg: ModelConfig, special: dict | None = None) -> nn.Module:
        """The ``transformers`` model of the same shape, untrained (``benchmarks/throughput.py``'s rival)."""
        raise NotImplementedError(f"the {self.name} family names no transformers model of its shape")

    def check_run(self, cfg) -> None:
        """Relations between the model and the other sections of a RunConfig (e.g. data.seq_len against the
        model's positions); raise ConfigError naming the keys and the fix."""

    def validation_weights(self, inputs: dict) -> torch.Tensor | None:
        """Each row's weight (B,) in the validation loss, which averages the rows' mean losses: None weighs rows
        alike (the paper's BERT and T5); a language model returns each row's count of predicted tokens, so the
        validation loss is the loss per token, as LMs report it."""
        return None

    def parameter_roles(self, model: nn.Module) -> dict[str, str]:
        """Role of every parameter, by its name in model.named_parameters(): hidden_matrix (2-D weights inside
        the blocks: attention and MLP projections), embedding (token/position tables), head (output projection;
        tied heads are the embedding), vector (norms, biases, other 1-D)."""
        raise NotImplementedError  # an optimizer that needs roles turns this into a one-line error

    def synthetic_special(self, vocab_size: int) -> dict:
        """Special token ids for calibration's synthetic batches (no tokenizer there)."""
        return {"pad": 0, "unk": 1, "cls": 2, "sep": 3, "mask": 4}


def block_roles(model: nn.Module, outside: dict[str, str], tables_in_blocks: tuple[str, ...] = ()) -> dict[str, str]:
    """Roles by the usual layout: 1-D parameters are vectors; 2-D ones inside ``model.layers`` hidden matrices,
    except those whose name ends in one of ``tables_in_blocks`` (lookup tables: embeddings); every other 2-D
    parameter must be named in ``outside`` ({name: role}), so a new one is an error, not a guess."""
    roles = {}
    for name, p in model.named_parameters():
        if p.ndim < 2:
            roles[name] = "vector"
        elif name.startswith("layers."):
            roles[name] = "embedding" if name.endswith(tables_in_blocks) else "hidden_matrix"
        elif name in outside:
            roles[name] = outside[name]
        else:
            raise ValueError(f"no parameter role for '{name}' {tuple(p.shape)}: declare it in the family's "
                             f"parameter_roles")
    return roles
