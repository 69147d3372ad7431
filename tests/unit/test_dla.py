"""The algebra of direct logit attribution and the bookkeeping of path patching, on hand-made arrays (no model)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from workbench.causal import dla, path
from workbench.errors import WorkbenchError
from workbench.models.sites import SITES, site_row
from workbench.probes.items import ProbeItem


def _item(i: int, cf: bool) -> ProbeItem:
    extra = dict(cf_kind="opposite_relation", cf_answer="no", cf_image=f"im{i}") if cf else {}
    return ProbeItem(id=str(i), task="verify" if cf else "color", family="spatial" if cf else "control", question="q?",
                     options=("yes", "no", "maybe"), answer="yes", image=f"im{i}", **extra)


def test_rms_gain_of_llama_and_gemma_norms():
    from transformers.models.gemma3.modeling_gemma3 import Gemma3RMSNorm
    from transformers.models.llama.modeling_llama import LlamaRMSNorm

    torch.manual_seed(0)
    llama, gemma = LlamaRMSNorm(6, eps=1e-5), Gemma3RMSNorm(6, eps=1e-6)
    with torch.no_grad():
        llama.weight.copy_(torch.randn(6))
        gemma.weight.copy_(torch.randn(6))
    g, eps = dla.rms_gain(llama, 6, "llama norm")
    assert eps == 1e-5 and torch.allclose(g, llama.weight, atol=1e-6)  # Llama: w ⊙ x / rms
    g, eps = dla.rms_gain(gemma, 6, "gemma norm")
    assert eps == 1e-6 and torch.allclose(g, 1 + gemma.weight, atol=1e-6)  # Gemma: (1 + w) ⊙ x / rms
    x = torch.tensor([[3.0, -4.0, 0.0, 0.0, 0.0, 0.0]])  # mean(x²) = 25 / 6
    with torch.no_grad():
        y = gemma(x)
    inv = dla._frozen_scale(x, y, g, eps, "gemma norm", 1e-5)
    assert inv.item() == pytest.approx(1 / math.sqrt(25 / 6 + 1e-6), rel=1e-6)


def test_a_layernorm_is_not_frozen_as_an_rmsnorm():
    ln = torch.nn.LayerNorm(4)
    with pytest.raises(WorkbenchError, match="no epsilon|not an RMSNorm"):
        ln.variance_epsilon = None
        ln.eps = None
        dla.rms_gain(ln, 4, "ln")
    ln.eps = 1e-5
    g, eps = dla.rms_gain(ln, 4, "ln")
    x = torch.tensor([[1.0, 2.0, 3.0, 10.0]])
    with pytest.raises(WorkbenchError, match="does not compute g ⊙ x / rms"):
        dla._frozen_scale(x, ln(x).detach(), g, eps, "ln", 1e-3)


def test_answer_and_foil_counterfactual_else_best_wrong_option():
    items = [_item(0, cf=True), _item(1, cf=False), _item(2, cf=False)]
    option_ids = torch.tensor([[5, 6, 7], [5, 6, 7], [5, 6, -1]])  # row 2 has two options (−1: padding)
    answer_idx = torch.tensor([0, 0, 0])
    logits = torch.zeros(3, 10)
    logits[:, 7] = 4.0  # "maybe" scores best among the wrong options of rows 0 and 1; row 2 has no "maybe"
    logits[:, 6] = 1.0
    answer, foil, kinds = dla._answer_foil(items, option_ids, answer_idx, logits)
    assert answer.tolist() == [5, 5, 5]
    assert foil.tolist() == [6, 7, 6]  # row 0: the counterfactual's answer "no", although "maybe" scores higher
    assert kinds == ["counterfactual", "best wrong option", "best wrong option"]


def test_dla_result_sums_and_long_rows():
    items = (_item(0, True), _item(1, False))
    heads = torch.arange(2 * 2 * 3, dtype=torch.float32).view(2, 2, 3)  # probe 0: 0..5 (sum 15), probe 1: 6..11 (sum 51)
    # totals: 15 + (1 + 2) + 0.25 + 0 = 18.25 and 51 + (0.5 + 0.5) − 1 + 0.5 = 51.5
    r = dla.DLAResult(heads=heads, mlp=torch.tensor([[1.0, 2.0], [0.5, 0.5]]), embed=torch.tensor([0.25, -1.0]),
                      bias=torch.tensor([0.0, 0.5]), logit_diff=torch.tensor([18.25, 51.5]), answer=torch.tensor([5, 5]),
                      foil=torch.tensor([6, 7]), foil_kind=("counterfactual", "best wrong option"), items=items,
                      frozen_norms=("model.norm",))
    assert r.total().tolist() == [18.25, 51.5] and r.error == 0.0
    rows = r.rows()
    assert len(rows) == 2 * (2 * 3 + 2 + 2)
    assert sum(x["value"] for x in rows if x["probe_id"] == "1") == 51.5
    mlp1 = [x for x in rows if x["component"] == "mlp" and x["probe_id"] == "0" and x["layer"] == 1]
    assert mlp1 == [dict(probe_id="0", task="verify", relation=items[0].relation, foil_kind="counterfactual", logit_diff=18.25,
                         component="mlp", layer=1, head=-1, value=2.0)]


def test_dla_refuses_gated_families_and_path_patching_refuses_a_bidirectional_prefix():
    mllama = SimpleNamespace(site=SimpleNamespace(row=site_row("mllama")))
    with pytest.raises(WorkbenchError, match="not defined for Mllama"):
        dla.check_family(mllama)
    for row in SITES:  # every other row passes the static check (Gemma 3 is handled with its post-norm frozen)
        if not row.other_kinds:
            dla.check_family(SimpleNamespace(site=SimpleNamespace(row=row)))
    with pytest.raises(WorkbenchError, match="PaliGemma.*bidirectional"):
        path.check_family(SimpleNamespace(site=SimpleNamespace(row=site_row("paligemma"))))
    path.check_family(SimpleNamespace(site=SimpleNamespace(row=site_row("llava"))))


def test_path_result_mean_and_rows_skip_non_senders():
    items = (_item(0, True), _item(1, True))
    nan = float("nan")
    effect = torch.tensor([[[0.5, nan], [nan, nan]], [[nan, nan], [nan, nan]]])  # probe 1 dropped
    delta = torch.tensor([[[1.0, nan], [0.0, nan]], [[2.0, nan], [0.0, nan]]])
    effect[0, 1, 0] = 0.0
    senders = torch.tensor([[True, False], [True, False]])
    r = path.PathResult(effect=effect, delta=delta, base_ld=torch.tensor([1.0, 2.0]), source_ld=torch.tensor([3.0, 2.0]),
                        senders=senders, receivers="logits", direction="noising", freeze_mlps=False, items=items)
    m = r.mean()
    assert m[0, 0].item() == 0.5 and m[1, 0].item() == 0.0 and math.isnan(m[0, 1].item())
    rows = r.rows()
    assert [(x["probe_id"], x["layer"], x["head"]) for x in rows] == [("0", 0, 0), ("0", 1, 0), ("1", 0, 0), ("1", 1, 0)]
    assert rows[2]["delta"] == 2.0 and math.isnan(rows[2]["value"])
