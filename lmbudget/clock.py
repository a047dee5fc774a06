"""The reference-system clock: cost tables, budgets, and charging.

A *reference system* is a validated cost table: seconds of the reference machine
for each unit of work, measured for one model signature and one microbatch shape.

Units and how they are keyed:

- ``fwd_bwd[n]``: forward + backward of one microbatch with ``n`` active layers
  (per stack, for encoder-decoder models; may be fractional: see ``lookup``);
- ``fwd[n]``: forward only (no grad) of one microbatch with ``n`` active layers;
- ``step[name]``: one optimizer step of optimizer ``name`` (clipping included). An entry of 0 means
  "included in the fwd_bwd figures" (the paper's tables) and is allowed only where it was not
  measured; a calibrated step always takes time.

A pass over ``k`` sequences costs ``k / micro_batch`` of the microbatch entry, so a
run may use any microbatch size and is charged the same RST for the same work.
Counts between two measured entries are interpolated linearly; counts outside the
measured range are an error. Training charges each unit *before* doing it and
stops when the next unit would pass the budget, so a run never exceeds its budget
and stops within one unit of it. Wall time is recorded beside RST, never used.

Work the table does not list (``transfer_step``): an optimizer step missing from the reference is
charged the reference's AdamW step times the ratio of the two steps timed side by side on this
machine by ``lmbudget calibrate --optimizers`` (on a table that folds AdamW's step into its
``fwd_bwd`` figures, the step's extra time over AdamW relative to the full model's forward+backward).
No entry and no such measurement is an error before the run starts, never a free step. Any other
kind of work must be expressed in these units (a pass through the context, or external RST).
"""
from __future__ import annotations

import datetime
import json
import math
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from lmbudget.io import atomic_write_text, lmbudget_home

LAYER_KINDS = ("fwd_bwd", "fwd")
TRANSFER_ANCHOR = "adamw"  # the optimizer every reference lists: unlisted steps are charged relative to it
MAX_SPREAD = 0.4  # refuse calibrations whose timings vary more than this (relative IQR; quiet 2-core VMs show up to ~0.3)
BUILTIN_DIR = Path(__file__).parent / "references"


class ClockError(ValueError):
    """A budget or cost-table problem the user can fix; the message names the fix."""


class BudgetExhausted(Exception):
    """Raised by :meth:`Clock.charge` when the next unit of work would pass the budget."""


# ----------------------------------------------------------------------------- budgets

@dataclass(frozen=True)
class Budget:
    kind: str      # "rst" (seconds of the reference system) or "steps"
    value: float

    def __str__(self) -> str:
        return f"{int(self.value)} steps" if self.kind == "steps" else format_seconds(self.value)


_UNITS = {"s": 1, "sec": 1, "second": 1, "seconds": 1, "m": 60, "min": 60, "mins": 60, "minute": 60,
          "minutes": 60, "h": 3600, "hr": 3600, "hour": 3600, "hours": 3600}


def parse_budget(text: str) -> Budget:
    """Parse ``90s``, ``5min``, ``1.5h``, ``24h`` (RST) or ``200 steps``."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e[+-]?\d+)?)\s*([a-z]+)\s*", str(text).lower())
    if m:
        number, unit = float(m.group(1)), m.group(2)
        if unit in ("step", "steps"):
            if number < 1 or not number.is_integer():
                raise ClockError(f"budget '{text}': a step budget must be a whole number of steps >= 1")
            return Budget("steps", number)
        if unit in _UNITS and number > 0:
            return Budget("rst", number * _UNITS[unit])
    raise ClockError(f"malformed budget '{text}': use a positive duration like 90s, 5min, 6h, or a step count like '200 steps'")


def format_seconds(s: float) -> str:
    if s >= 3600:
        return f"{s / 3600:.4g}h"
    if s >= 60:
        return f"{s / 60:.4g}min"
    return f"{s:.4g}s"


# ----------------------------------------------------------------------------- cost tables

@dataclass
class CostTable:
    name: str
    signature: dict                 # the model signature the costs are valid for
    seq_len: int
    micro_batch: int                # sequences per microbatch the entries were measured with
    costs: dict                     # {"fwd_bwd": {"4": s, ...}, "fwd": {...}, "step": {"adamw": s, ...}}
    spread: dict = field(default_factory=dict)  # same shape: relative spread of each timing
    system: dict = field(default_factory=dict)  # machine, software, precision, date
    notes: str = ""

    # -- persistence
    @classmethod
    def load(cls, path: str | Path) -> "CostTable":
        try:
            raw = json.loads(Path(path).read_text())
            table = cls(**{k: raw[k] for k in raw if k in cls.__dataclass_fields__})
        except (OSError, ValueError, TypeError) as e:
            raise ClockError(f"cannot read cost table {path}: {e}") from None
        for key in ("fwd_bwd", "step"):
            if key not in table.costs:
                raise ClockError(f"cost table {path} has no '{key}' entries; recalibrate with `lmbudget calibrate`")
        return table

    def save(self, path: str | Path) -> None:
        problems = self.problems()
        if problems:
            raise ClockError(f"refusing to save cost table '{self.name}': {problems[0]}")
        atomic_write_text(Path(path), json.dumps(asdict(self), indent=2) + "\n")

    # -- validation
    def problems(self) -> list[str]:
        """Every reason this table cannot be trusted: non-positive, non-monotone or noisy entries."""
        out = []
        for kind in LAYER_KINDS:
            series = sorted((float(k), v) for k, v in self.costs.get(kind, {}).items())
            for n, v in series:
                if not (v > 0 and math.isfinite(v)):
                    out.append(f"{kind}[{n:g}] = {v} is not a positive time")
            for (n0, v0), (n1, v1) in zip(series, series[1:]):
                if v1 <= v0:
                    out.append(f"{kind} is not increasing in active layers: {kind}[{n0:g}] = {v0} but {kind}[{n1:g}] = {v1}")
        for name, v in self.costs.get("step", {}).items():
            if not (v >= 0 and math.isfinite(v)):
                out.append(f"step[{name}] = {v} is not a non-negative time")
            elif v == 0 and name in self.spread.get("step", {}):  # 0 = "folded into fwd_bwd", never a timing
                out.append(f"step[{name}] = 0 was measured (it has a spread), but a timed step takes time; recalibrate")
        for kind, entries in self.spread.items():
            for k, s in entries.items():
                if s > MAX_SPREAD:
                    out.append(f"{kind}[{k}] timings spread {s:.0%} (> {MAX_SPREAD:.0%}): the machine was busy; recalibrate on a quiet machine")
        return out

    def validate(self) -> "CostTable":
        problems = self.problems()
        if problems:
            raise ClockError(f"invalid cost table '{self.name}': {problems[0]}")
        return self

    def repaired(self) -> "CostTable":
        """Replace each entry that breaks monotonicity between two consistent neighbours by linear
        interpolation of those neighbours (used for the paper's 7-layer typo; recorded in ``notes``)."""
        costs = {k: dict(v) for k, v in self.costs.items()}
        fixes = []
        for kind in LAYER_KINDS:
            series = sorted((float(k), k, v) for k, v in costs.get(kind, {}).items())
            for (n0, _, v0), (n, key, v), (n1, _, v1) in zip(series, series[1:], series[2:]):
                if v0 < v1 and not (v0 < v < v1):
                    fixed = v0 + (v1 - v0) * (n - n0) / (n1 - n0)
                    costs[kind][key] = fixed
                    fixes.append(f"{kind}[{key}] {v} -> {fixed:.6g} (interpolated)")
        notes = self.notes + ("" if not fixes else " Repaired: " + "; ".join(fixes) + ".")
        return CostTable(self.name, self.signature, self.seq_len, self.micro_batch, costs, self.spread, self.system, notes)

    # -- matching and lookup
    def check_matches(self, signature: dict, seq_len: int) -> None:
        # Both ways: a key only one side has is a difference too (an empty signature matches nothing).
        keys = list(signature) + [k for k in self.signature if k not in signature]
        diffs = [f"{k}: table {self.signature.get(k)!r} vs model {signature.get(k)!r}" for k in keys
                 if self.signature.get(k) != signature.get(k)]
        if not signature:
            diffs.append("the model's signature() is empty: return the keys its cost depends on")
        if self.seq_len != seq_len:
            diffs.append(f"seq_len: table {self.seq_len} vs run {seq_len}")
        if diffs:
            raise ClockError(f"cost table '{self.name}' is for another model ({'; '.join(diffs)}); "
                             f"run `lmbudget calibrate` for this model or pass a matching --reference")

    def layer_range(self, kind: str) -> tuple[float, float]:
        keys = [float(k) for k in self.costs.get(kind, {})]
        return (min(keys), max(keys)) if keys else (math.nan, math.nan)

    def lookup(self, kind: str, key) -> float:
        """Seconds per microbatch (layer kinds, interpolated) or per step (``step``)."""
        entries = self.costs.get(kind)
        if not entries:
            raise ClockError(f"cost table '{self.name}' has no '{kind}' entries; recalibrate with `lmbudget calibrate`")
        if kind not in LAYER_KINDS:
            if str(key) not in entries:
                raise ClockError(f"cost table '{self.name}' has no '{kind}' cost for '{key}' "
                                 f"(has: {', '.join(entries)}); recalibrate with `lmbudget calibrate`")
            return float(entries[str(key)])
        n = float(key)
        series = sorted((float(k), v) for k, v in entries.items())
        for (n0, v0), (n1, v1) in zip(series, series[1:]):
            if n0 <= n <= n1:
                return v0 + (v1 - v0) * (n - n0) / (n1 - n0)
        if len(series) == 1 and series[0][0] == n:
            return series[0][1]
        lo, hi = series[0][0], series[-1][0]
        raise ClockError(f"cost table '{self.name}' covers {kind} for {lo:g}..{hi:g} active layers, not {n:g}; "
                         f"recalibrate with `lmbudget calibrate`")


def builtin_tables() -> dict[str, Path]:
    return {p.stem: p for p in sorted(BUILTIN_DIR.glob("*.json"))}


def saved_dir() -> Path:
    return lmbudget_home() / "references"


def saved_tables() -> dict[str, Path]:
    d = saved_dir()
    return {p.stem: p for p in sorted(d.glob("*.json"))} if d.is_dir() else {}


def family_tables(family_ref: str | None = None) -> dict[str, Path]:
    """Named tables model families ship (``ModelFamily.references``: name -> file beside the family's module):
    ``family_ref``'s first (a plug-in no registry lists), then every registered family's."""
    import inspect

    from lmbudget.config import ConfigError
    from lmbudget.families import family
    from lmbudget.registry import FAMILIES
    out: dict[str, Path] = {}
    for ref in ([family_ref] if family_ref else []) + FAMILIES.names():
        try:
            fam = family(ref)
        except ConfigError:  # an installed entry point that no longer imports
            continue
        base = Path(inspect.getfile(type(fam))).parent
        for name, file in fam.references.items():
            out.setdefault(name, base / file)
    return out


def load_reference(name_or_path: str, family_ref: str | None = None) -> CostTable:
    """A built-in name, a name a model family ships (``family_ref``'s or a registered one's), a saved name,
    or a path to a table file; validated before use."""
    path = (builtin_tables().get(name_or_path) or family_tables(family_ref).get(name_or_path)
            or saved_tables().get(name_or_path))
    if path is None:
        if os.path.exists(name_or_path):
            path = Path(name_or_path)
        else:
            known = sorted(builtin_tables()) + sorted(family_tables(family_ref)) + sorted(saved_tables())
            raise ClockError(f"unknown reference '{name_or_path}': not a file, nor one of {', '.join(known) or '(none)'}; "
                             f"list them with `lmbudget references`")
    table = CostTable.load(path)
    if table.system.get("repair"):
        table = table.repaired()
    return table.validate()


def default_reference(model_name: str, signature: dict, seq_len: int, preset_reference: str = "") -> CostTable:
    """The preset's built-in table, else the table `calibrate` last saved for this model, else an error."""
    if preset_reference:
        return load_reference(preset_reference)
    for name, path in saved_tables().items():
        table = CostTable.load(path)
        if name.startswith(model_name) and table.signature == signature and table.seq_len == seq_len:
            return table.validate()
    raise ClockError(f"no reference system for model '{model_name}' (seq_len {seq_len}): "
                     f"run `lmbudget calibrate --model {model_name}` or pass --reference NAME_OR_FILE")


# ----------------------------------------------------------------------------- work the table does not list

def calibration_date(table: CostTable) -> datetime.datetime:
    """When ``table`` was measured (``system.date``); the distant past for a table that does not say."""
    try:
        date = datetime.datetime.fromisoformat(str(table.system.get("date", "")))
    except ValueError:
        return datetime.datetime.min.replace(tzinfo=datetime.timezone.utc)
    return date if date.tzinfo else date.replace(tzinfo=datetime.timezone.utc)


def local_step_measurements(reference: CostTable, key: str) -> list[CostTable]:
    """This machine's calibrations (the saved tables) of the reference's model and sequence length that
    timed both ``step[key]`` and the anchor's step in one run, newest first (by ``system.date``)."""
    found = []
    for path in saved_tables().values():
        try:
            local = CostTable.load(path).validate()
        except ClockError:  # an unreadable or untrustworthy file is no measurement
            continue
        steps = local.costs["step"]
        if (local.signature == reference.signature and local.seq_len == reference.seq_len
                and steps.get(str(key), 0) > 0 and steps.get(TRANSFER_ANCHOR, 0) > 0):
            found.append(local)
    return sorted(found, key=lambda t: (calibration_date(t), t.name), reverse=True)


def transfer_step(reference: CostTable, key: str, model: str, optimizer: str) -> dict:
    """How to charge ``step[key]`` (optimizer ``optimizer``, a reference for calibrate) on ``reference``,
    which does not list it: its cost is an entry of the reference times a ratio measured side by side on
    this machine, by the newest local calibration (``local_step_measurements``):

    - ``reference.step[adamw] x local.step[key] / local.step[adamw]`` where the reference times AdamW's step;
    - where it lists AdamW's step as 0 (folded into its ``fwd_bwd`` figures, as the paper's tables do, whose
      other step entries are extra time over AdamW): ``reference.fwd_bwd[L] x max(0, local.step[key] -
      local.step[adamw]) / local.fwd_bwd[L]`` at the full model's L layers, the local pass scaled to the
      reference's microbatch. A step cheaper than AdamW is charged as AdamW there: the fold cannot be undone.

    Returns the record the summary keeps (``cost_transfers``); raises ClockError naming the fix."""
    fix = f"`lmbudget calibrate --model {model} --optimizers {optimizer}`"
    anchor = reference.costs["step"].get(TRANSFER_ANCHOR)
    if anchor is None:
        raise ClockError(f"cost table '{reference.name}' has no step cost for optimizer '{optimizer}' nor for "
                         f"{TRANSFER_ANCHOR} to transfer one from: run {fix} and pass that table as --reference")
    locals_ = local_step_measurements(reference, key)
    if not locals_:
        raise ClockError(f"cost table '{reference.name}' has no step cost for optimizer '{optimizer}' and this machine "
                         f"has no calibration timing it beside {TRANSFER_ANCHOR} for this model: run {fix}")
    local = locals_[0]
    step, local_anchor = local.costs["step"][str(key)], local.costs["step"][TRANSFER_ANCHOR]
    if anchor > 0:
        source, ratio = f"step[{TRANSFER_ANCHOR}]", step / local_anchor
    else:
        n = reference.layer_range("fwd_bwd")[1]
        source, anchor = f"fwd_bwd[{n:g}]", reference.lookup("fwd_bwd", n)
        local_pass = local.lookup("fwd_bwd", n) * reference.micro_batch / local.micro_batch
        ratio = max(0.0, step - local_anchor) / local_pass
    return {"from": source, "reference": reference.name, "ratio": ratio, "measured_by": local.name,
            "measured_at": local.system.get("date"), "rst_s_per_step": anchor * ratio}


# ----------------------------------------------------------------------------- the clock

class Clock:
    """Charges units of work against a budget and keeps a ledger of where the RST went."""

    def __init__(self, table: CostTable, budget: Budget):
        self.table = table
        self.budget = budget
        self.used = 0.0           # RST seconds charged
        self.steps = 0            # optimizer steps completed
        self.ledger: dict[str, dict[str, float]] = {}  # tag -> {"rst_s": ..., "units": ...}
        self.transfers: dict[str, dict] = {}  # "step[KEY]" -> how its cost came to be (``transfer_step``)

    def require_step(self, key: str, model: str, optimizer: str, log=None) -> None:
        """Before the run: give optimizer step ``key`` a cost, the table's entry or else a transferred one
        (``transfer_step``); raises ClockError, naming the fix, where there is neither."""
        if str(key) in self.table.costs["step"] or f"step[{key}]" in self.transfers:
            return
        record = self.transfers[f"step[{key}]"] = transfer_step(self.table, key, model, optimizer)
        if log:
            log(f"step[{key}] is not in {record['reference']}: charged {record['rst_s_per_step']:.6g} RST s = "
                f"{record['from']} x {record['ratio']:.4g}, the ratio measured by {record['measured_by']}")

    def cost(self, kind: str, key, examples: int | None = None) -> float:
        transfer = self.transfers.get(f"{kind}[{key}]")
        per_unit = transfer["rst_s_per_step"] if transfer else self.table.lookup(kind, key)
        return per_unit if examples is None else per_unit * examples / self.table.micro_batch

    def charge(self, kind: str, key, examples: int | None = None, tag: str = "train", free: bool = False) -> float:
        """Charge one unit (``examples`` sequences through ``key`` active layers, or one ``step``).

        Raises BudgetExhausted, charging nothing, if it would pass an RST budget. ``free`` records
        the unit in the ledger without charging it (the paper's "for free" ablations)."""
        return self.charge_seconds(self.cost(kind, key, examples), tag, free)

    def charge_seconds(self, rst_s: float, tag: str, free: bool = False) -> float:
        """Charge RST seconds (a unit's cost, or auxiliary work measured elsewhere such as an
        irreducible-loss model's training run)."""
        if not free and self.budget.kind == "rst" and self.used + rst_s > self.budget.value * (1 + 1e-12):
            raise BudgetExhausted
        entry = self.ledger.setdefault(tag, {"rst_s": 0.0, "units": 0.0, "free_rst_s": 0.0})
        entry["units"] += 1
        entry["free_rst_s" if free else "rst_s"] += rst_s
        if not free:
            self.used += rst_s
        return rst_s

    def step_done(self) -> None:
        self.steps += 1

    @property
    def fraction(self) -> float:
        """Share of the budget used: what drives the LR schedule and algorithm schedules."""
        return self.fraction_of(self.budget)

    def fraction_of(self, budget: Budget) -> float:
        """Share of another ``budget`` (of the same kind) used: a wsd-branches stem's position in a branch's."""
        if budget.kind == "steps":
            return min(1.0, self.steps / budget.value)
        return min(1.0, self.used / budget.value)

    @property
    def exhausted(self) -> bool:
        return self.budget.kind == "steps" and self.steps >= self.budget.value

    def state_dict(self) -> dict:
        return {"used": self.used, "steps": self.steps, "ledger": self.ledger, "transfers": self.transfers}

    def load_state_dict(self, state: dict) -> None:
        self.used, self.steps = float(state["used"]), int(state["steps"])
        self.ledger = {k: dict(v) for k, v in state["ledger"].items()}
        # A resumed run keeps the transferred costs it started with, even if a newer calibration was saved since.
        self.transfers.update({k: dict(v) for k, v in state.get("transfers", {}).items()})
