"""Clean accuracy records: chance per task from the probes' options, and the warning when spatial accuracy is near
chance (hand-computed records on both sides of each rule)."""

import math

import pytest

from workbench import clean
from workbench.probes.items import ProbeItem


def _item(i, task, family, options):
    return ProbeItem(id=str(i), task=task, family=family, question="?", options=tuple(options), answer=options[0], image="a.png")


def test_chance_is_one_over_the_options_averaged_per_probe():
    items = [_item(0, "relation", "spatial", "lrab"), _item(1, "relation", "spatial", "lrab"),
             _item(2, "verify", "spatial", ("yes", "no")), _item(3, "color", "control", "rgbyop")]
    ch = clean.chance_of(items)
    assert ch["relation"] == 0.25 and ch["verify"] == 0.5 and ch["color"] == pytest.approx(1 / 6)
    assert ch["spatial"] == pytest.approx((0.25 + 0.25 + 0.5) / 3)  # per probe, not per task
    assert ch["all"] == pytest.approx((0.25 + 0.25 + 0.5 + 1 / 6) / 4)
    assert clean.counts_of(items) == {"all": 4, "color": 1, "control": 1, "relation": 2, "spatial": 3, "verify": 1}
    assert clean.chance_of([it.to_json() for it in items]) == ch  # JSON records (a manifest's items) give the same


def test_record_is_json_able_and_keeps_its_three_parts():
    rec = clean.record({"spatial": 0.9, "all": 0.8}, {"spatial": 10, "all": 20}, {"spatial": 0.375, "all": 0.3})
    assert rec == {"accuracy": {"all": 0.8, "spatial": 0.9}, "n": {"all": 20, "spatial": 10},
                   "chance": {"all": 0.3, "spatial": 0.375}}
    import json

    assert json.loads(json.dumps(rec)) == rec


def _rec(acc, n=400, chance=0.25, task="relation"):
    return clean.record({task: acc}, {task: n}, {task: chance})


def test_warning_by_skill_over_chance():
    # skill = (acc − chance) / (1 − chance); chance 0.25: skill 2/3 at acc 0.75
    assert clean.warning(_rec(0.25)) is not None  # at chance
    assert clean.warning(_rec(0.74)) is not None  # skill 0.653 < 2/3
    assert clean.warning(_rec(0.76)) is None  # skill 0.68
    assert clean.warning(_rec(1.0)) is None
    line = clean.warning(_rec(0.5))
    assert line.count("\n") == 0 and "relation 50.0% (chance 25%, n=400)" in line and "--like" in line


def test_warning_by_binomial_error_for_small_sets():
    # n = 4, chance 0.5: 2 standard errors = 2·sqrt(0.25/4) = 0.5, so even 100% is indistinguishable from guessing
    assert clean.warning(_rec(1.0, n=4, chance=0.5, task="verify")) is not None
    # n = 16: 2·sqrt(0.25/16) = 0.25, so 100% is clear of chance + 0.25 and 75% (skill 0.5) is not
    assert 2 * math.sqrt(0.25 / 16) == 0.25
    assert clean.warning(_rec(1.0, n=16, chance=0.5, task="verify")) is None
    assert clean.warning(_rec(0.75, n=16, chance=0.5, task="verify")) is not None


def test_no_warning_without_a_record_or_without_spatial_probes():
    assert clean.warning(None) is None and clean.warning({}) is None
    assert clean.warning(_rec(0.2, chance=0.25, task="color")) is None  # control tasks alone never warn
    assert clean.summary(None) is None
    assert clean.summary(_rec(0.5)) == "clean accuracy: relation 50.0% (chance 25%)"
