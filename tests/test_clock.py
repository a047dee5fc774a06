import json

import pytest

from lmbudget.clock import (Budget, BudgetExhausted, Clock, ClockError, CostTable, builtin_tables, load_reference,
                            parse_budget)
from lmbudget.schedules import lr_factor


def table(**over):
    base = dict(name="t", signature={"arch": "bert", "n_layers": 4}, seq_len=32, micro_batch=8,
                costs={"fwd_bwd": {"1": 1.0, "2": 2.0, "4": 4.0}, "fwd": {"1": 0.5, "4": 2.0}, "step": {"adamw": 0.25}})
    base.update(over)
    return CostTable(**base)


@pytest.mark.parametrize("text,kind,value", [("90s", "rst", 90), ("5min", "rst", 300), ("1.5h", "rst", 5400),
                                             ("24h", "rst", 86400), ("200 steps", "steps", 200), ("1step", "steps", 1)])
def test_parse_budget(text, kind, value):
    assert parse_budget(text) == Budget(kind, value)


@pytest.mark.parametrize("text", ["", "5", "abc", "-3min", "0s", "5 parsecs", "2.5 steps", "0 steps"])
def test_malformed_budget_is_a_clear_error(text):
    with pytest.raises(ClockError, match="budget"):
        parse_budget(text)


def test_lookup_interpolates_between_measured_counts_and_refuses_outside():
    t = table()
    assert t.lookup("fwd_bwd", 2) == 2.0
    assert t.lookup("fwd_bwd", 3) == pytest.approx(3.0)
    assert t.lookup("fwd", 2.5) == pytest.approx(0.5 + 1.5 * 1.5 / 3)
    with pytest.raises(ClockError, match="covers"):
        t.lookup("fwd_bwd", 5)
    with pytest.raises(ClockError, match="no 'step' cost for 'lion'"):
        t.lookup("step", "lion")


def test_charges_scale_with_examples_and_total_equals_sum_of_units():
    clock = Clock(table(), parse_budget("100s"))
    charged = [clock.charge("fwd_bwd", 4, examples=8), clock.charge("fwd_bwd", 2, examples=4, tag="x"),
               clock.charge("fwd", 1, examples=16, tag="selection"), clock.charge("step", "adamw")]
    assert charged == [4.0, 1.0, 1.0, 0.25]
    assert clock.used == pytest.approx(sum(charged))
    assert sum(e["rst_s"] for e in clock.ledger.values()) == pytest.approx(clock.used)
    assert clock.ledger["selection"]["units"] == 1


def test_budget_never_exceeded_and_stops_within_one_unit():
    clock = Clock(table(), parse_budget("10s"))
    n = 0
    with pytest.raises(BudgetExhausted):
        while True:
            clock.charge("fwd_bwd", 3, examples=8)
            n += 1
    assert n == 3 and clock.used == pytest.approx(9.0)
    assert clock.used <= 10 and 10 - clock.used < 3.0
    assert clock.fraction == pytest.approx(0.9)


def test_free_units_are_recorded_but_not_charged():
    clock = Clock(table(), parse_budget("10s"))
    clock.charge("fwd", 4, examples=8, tag="selection", free=True)
    assert clock.used == 0 and clock.ledger["selection"]["free_rst_s"] == 2.0


def test_step_budget_drives_fraction_by_steps():
    clock = Clock(table(), parse_budget("4 steps"))
    clock.charge("fwd_bwd", 4, examples=8)
    clock.step_done()
    assert clock.fraction == 0.25 and not clock.exhausted
    for _ in range(3):
        clock.step_done()
    assert clock.exhausted


def test_validator_finds_non_monotone_non_positive_and_noisy_entries():
    assert table().problems() == []
    assert any("not increasing" in p for p in table(costs={"fwd_bwd": {"1": 1, "2": 0.5}, "step": {}}).problems())
    assert any("positive" in p for p in table(costs={"fwd_bwd": {"1": 0.0, "2": 1}, "step": {}}).problems())
    assert any("spread" in p for p in table(spread={"fwd_bwd": {"1": 0.9}}).problems())
    with pytest.raises(ClockError, match="refusing to save"):
        table(costs={"fwd_bwd": {"1": 2, "2": 1}, "step": {}}).save("/tmp/never-written.json")


def test_paper_table_typo_is_found_and_repaired_by_interpolation(tmp_path):
    raw = CostTable.load(builtin_tables()["paper-rtx3090-bert"])
    assert raw.costs["fwd_bwd"]["7"] == 0.01052
    assert any("fwd_bwd[4] = 0.06508 but fwd_bwd[7] = 0.01052" in p for p in raw.problems())
    fixed = load_reference("paper-rtx3090-bert")
    assert fixed.costs["fwd_bwd"]["7"] == pytest.approx(0.06508 + 0.75 * (0.1186 - 0.06508))
    assert fixed.problems() == [] and "Repaired" in fixed.notes
    # 24 RST hours of the baseline (12 microbatches of 128 per update) is about 32k updates
    assert 86400 / (12 * fixed.lookup("fwd_bwd", 16)) == pytest.approx(32_000, rel=0.01)


def test_every_builtin_table_is_valid():
    for name in builtin_tables():
        load_reference(name)


def test_table_for_another_model_is_a_clear_error():
    t = table()
    t.check_matches({"arch": "bert", "n_layers": 4}, 32)
    with pytest.raises(ClockError, match="another model.*n_layers: table 4 vs model 8"):
        t.check_matches({"arch": "bert", "n_layers": 8}, 32)
    with pytest.raises(ClockError, match="seq_len"):
        t.check_matches({"arch": "bert", "n_layers": 4}, 64)


def test_unknown_reference_and_unreadable_file(tmp_path):
    with pytest.raises(ClockError, match="unknown reference"):
        load_reference("no-such-system")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"name": "bad"}))
    with pytest.raises(ClockError, match="cannot read cost table"):
        load_reference(str(bad))


def test_triangle_schedule_peaks_at_half_and_is_zero_at_the_end():
    assert lr_factor("triangle", 0) == 0
    assert lr_factor("triangle", 0.25) == pytest.approx(0.5)
    assert lr_factor("triangle", 0.5) == 1
    assert lr_factor("triangle", 0.75) == pytest.approx(0.5)
    assert lr_factor("triangle", 1.0) == 0


def test_t5_cosine_schedule():
    assert lr_factor("t5-cosine", 0) == 0.5
    assert lr_factor("t5-cosine", 0.15) == pytest.approx(1.0)
    assert lr_factor("t5-cosine", 1.0) == pytest.approx(1e-5 / 2e-2)
