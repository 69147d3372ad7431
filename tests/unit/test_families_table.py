"""analyses/families_table.py: test ids → (family, step) cells, and the cells' text, on a hand-written junit file.

The script prints the README's families table from the test results; if its mapping broke, the table would silently
say "not tested" everywhere. These tests pin the mapping on ids shaped like the real ones (a parametrized family key
among other parameters, a family named in the function name, a browser test on the app's default model), the
rendering of every kind of cell, the README rewrite between the markers, and exit status 2 when nothing maps.
"""

from __future__ import annotations

import ast
import importlib.util
import sys
from pathlib import Path

import pytest

from workbench.models.sites import MISSING, SITES

ROOT = Path(__file__).resolve().parents[2]


def _load():
    spec = importlib.util.spec_from_file_location("families_table", ROOT / "analyses" / "families_table.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["families_table"] = module
    spec.loader.exec_module(module)
    return module


ft = _load()

JUNIT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest" tests="17">
<testcase classname="tests.integration.test_families" name="test_model_info_prints_the_family[qwen2_vl]" time="0.1"/>
<testcase classname="tests.integration.test_families" name="test_model_info_prints_the_family[llava]" time="0.1">
  <failure message="AssertionError: assert 'LLaVA-1.5' in ''">trace</failure></testcase>
<testcase classname="tests.integration.test_oracles" name="test_zero_ablation_equals_weight_surgery[nnsight-head0-llava_next]"/>
<testcase classname="tests.integration.test_oracles" name="test_zero_ablation_equals_weight_surgery[torch-head1-llava_next]"/>
<testcase classname="tests.integration.test_oracles" name="test_mllama_rows_are_checked_per_layer_kind"/>
<testcase classname="tests.integration.test_packed" name="test_families_the_packed_mask_cannot_express_are_refused[paligemma]"/>
<testcase classname="tests.integration.test_oracles" \
name="test_transformer_lens_refuses_families_it_cannot_bridge_in_one_line[qwen2_vl]"/>
<testcase classname="tests.integration.test_oracles" name="test_transformer_lens_agrees_with_nnsight_on_per_head_effects[gemma3]">
  <skipped type="pytest.skip" message="Skipped: no adapter here">skip</skipped></testcase>
<testcase classname="tests.integration.test_families" name="test_scale_train_lowers_the_training_loss[idefics3]"/>
<testcase classname="tests.integration.test_families" name="test_scale_train_lowers_the_training_loss[smolvlm]"/>
<testcase classname="tests.integration.test_families" name="test_apply_scales_with_generate[internvl]"/>
<testcase classname="tests.integration.test_families" name="test_build_batch_of_llava_next_counts_its_anyres_tile"/>
<testcase classname="tests.integration.test_families" name="test_sweep_with_the_default_engine[gemma3]"/>
<testcase classname="tests.integration.test_families" name="test_sweep_with_the_default_engine[gemma3]">
  <error message="failed on teardown with &quot;OSError&quot;">teardown</error></testcase>
<testcase classname="tests.browser.test_app" name="test_explorer_and_head_page_on_a_qwen2_5_vl_sweep"/>
<testcase classname="tests.browser.test_app" name="test_compare_two_items"/>
<testcase classname="tests.integration.test_families" name="test_unsupported_architecture_folder_is_one_line_exit_2"/>
</testsuite></testsuites>
"""


@pytest.fixture
def junit(tmp_path):
    path = tmp_path / "junit.xml"
    path.write_text(JUNIT)
    return path


def _cells(junit, browser_default="llava"):
    return ft.map_cases(ft.read_junit(junit), browser_default)


def test_ids_map_to_family_and_step(junit):
    mapped = _cells(junit)
    got = {key: sorted(c.status for c in cases) for key, cases in mapped.cells.items()}
    assert got == {
        ("qwen2_vl", ft.MODEL_INFO): ["passed"], ("llava", ft.MODEL_INFO): ["failed"],
        ("llava_next", ft.ORACLES): ["passed", "passed"],  # not "llava": the longest model_type wins
        ("mllama", ft.ORACLES): ["passed"],  # the family named in the function name
        ("paligemma", ft.PACKED): ["passed"], ("qwen2_vl", ft.TL): ["passed"], ("gemma3", ft.TL): ["skipped"],
        ("llava_next", ft.BATCH): ["passed"],  # named in the function name: again the longest model_type wins
        ("idefics3", ft.TRAIN): ["passed"], ("smolvlm", ft.TRAIN): ["passed"], ("internvl", ft.APPLY): ["passed"],
        ("gemma3", ft.SWEEP): ["error"],  # passed, then a teardown error: the worst status is kept
        ("qwen2_5_vl", ft.BROWSER): ["passed"], ("llava", ft.BROWSER): ["passed"],  # no family in the id: the app's default
    }
    assert [c.name for c in mapped.loose] == ["test_unsupported_architecture_folder_is_one_line_exit_2"]


def test_cells_render_pass_fail_refused_skipped_and_not_tested(junit):
    lines = [line[2:-2].split(" | ") for line in ft.table(_cells(junit)).splitlines()[2:]]
    rows = {r[0]: r for r in lines}
    col = {step: 4 + i for i, step in enumerate(ft.STEPS)}
    assert len(lines) == len(SITES) + len(MISSING) and set(rows) >= {r.family for r in SITES}
    assert rows["Qwen2-VL"][col[ft.MODEL_INFO]] == "pass (1)"
    assert rows["LLaVA-1.5"][col[ft.MODEL_INFO]] == "FAIL (1 of 1)"
    assert rows["LLaVA-NeXT"][col[ft.ORACLES]] == "pass (2)" and rows["LLaVA-NeXT"][col[ft.SWEEP]] == "not tested"
    assert rows["Gemma 3"][col[ft.SWEEP]] == "FAIL (1 of 1)"
    assert rows["Gemma 3"][col[ft.TL]] == "skipped: no adapter here"
    paligemma = next(r for r in SITES if r.family == "PaliGemma")
    assert rows["PaliGemma"][col[ft.PACKED]] == (
        f"refused: the packed fast path is not exact for PaliGemma: {paligemma.unpackable}")
    assert rows["Qwen2-VL"][col[ft.TL]].startswith("refused: TransformerLens ")
    assert rows["Qwen2-VL"][col[ft.TL]].endswith(" has no adapter for Qwen2VLForConditionalGeneration")
    assert rows["Idefics3 / SmolVLM"][col[ft.TRAIN]] == "pass (2: idefics3 1, smolvlm 1)"
    assert rows["Idefics3 / SmolVLM"][col[ft.APPLY]] == "not tested"
    assert rows["InternVL"][col[ft.APPLY]] == "pass (1)"
    assert rows["Qwen2.5-VL"][col[ft.BROWSER]] == "pass (1)" and rows["LLaVA-1.5"][col[ft.BROWSER]] == "pass (1)"
    missing = [r for r in lines if r[1].strip("`") in MISSING]
    assert len(missing) == len(MISSING) and all(r[4].startswith("no transformers 5.24 class: ") for r in missing)


def test_collected_browser_tests_say_not_run():
    case = ft.Case("test_app", "test_compare_two_items", (), ft.NOT_RUN)
    assert ft.render([case], ft.BROWSER, "llava") == "not run (pass --browser)"
    assert ft.render([], ft.BROWSER, "llava") == "not tested"
    mixed = [ft.Case("test_families", "t", ("llava",), ft.PASSED),
             ft.Case("test_families", "t", ("gemma3",), ft.SKIPPED, "Skipped: why")]
    assert ft.render(mixed, ft.SWEEP, "llava") == "pass (1); skipped (1): why"


def test_every_family_parametrized_test_function_has_a_step():
    """A new family test in these modules must land in a column (read from the sources, not hand-listed here)."""
    for module in ft.MODULES:
        tree = ast.parse((ROOT / module).read_text())
        for fn in (n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name.startswith("test_")):
            params = [ast.unparse(d.args[0]) for d in fn.decorator_list if isinstance(d, ast.Call)
                      and ast.unparse(d.func).endswith("parametrize") and d.args]
            if any(p.strip("'\"") in ("key", "family") for p in params):
                assert ft.step_of(ft.Case(Path(module).stem, fn.name, (), ft.PASSED)) is not None, (
                    f"{module}::{fn.name} maps to no step")


def test_main_writes_the_report_and_the_readme_between_the_markers(junit, tmp_path, monkeypatch):
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{ft.START}\nold hand-kept table\n{ft.END}\nafter\n")
    monkeypatch.setattr(ft, "README", readme)
    monkeypatch.setattr(ft, "default_browser_family", lambda: "llava")
    out = tmp_path / "table.md"
    rc = ft.main(["--from-junit", str(junit), "--out", str(out), "--write-readme"])
    assert rc == 1, "a failed test makes the exit status 1"
    text = readme.read_text()
    assert text.startswith(f"intro\n{ft.START}\n| family |") and text.endswith(f"{ft.END}\nafter\n")
    assert "old hand-kept table" not in text and "| pass (1) |" in text
    assert "test_unsupported_architecture_folder_is_one_line_exit_2" in out.read_text()
    with pytest.raises(SystemExit, match="exactly one"):
        ft.replace_readme("no markers", "x")


def test_main_refuses_a_run_that_maps_nothing(tmp_path, monkeypatch):
    path = tmp_path / "junit.xml"
    path.write_text('<testsuites><testsuite><testcase classname="tests.unit.test_x" name="test_y"/></testsuite></testsuites>')
    monkeypatch.setattr(ft, "collect", lambda module: [])
    assert ft.main(["--from-junit", str(path), "--out", str(tmp_path / "t.md")]) == 2
