"""Direct logit attribution and path patching on real forwards, against oracles computed here with plain hooks.

DLA: heads + MLPs + embeddings (+ biases) sum to the model's own logit difference within 1e-4 (float32) on the
organism and on tiny Qwen2-VL and Gemma 3 checkpoints (Gemma 3 with its post-attention norm frozen too); one head's
term equals the logit difference lost when that head's contribution is taken out of the final residual with the final
norm's scale frozen, computed from the norm's own weight. Path patching: with one decoder layer, sender → logits equals
activation patching of the head (a manual hook that swaps the head's last-token ``o_proj`` input slice for the
source's); a last-layer head's path to the logits equals its activation patching in any depth; with the MLPs frozen the
path is the closed-form direct path; sender → receiver heads equals the two-step algorithm written out with hooks here.
"""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from tests.conftest import cached_probes
from workbench.causal.dla import direct_logit_attribution
from workbench.causal.pairs import pair_batch, pair_logit_diff
from workbench.causal.path import path_patch
from workbench.cli import app
from workbench.errors import WorkbenchError
from workbench.models.load import load_vlm
from workbench.models.prompts import build_batch
from workbench.organism import DEFAULT_MODEL

runner = CliRunner()


@pytest.fixture(scope="module")
def one_layer_vlm(tmp_path_factory):
    from workbench.models.scaffold import random_llava_folder

    folder = random_llava_folder(tmp_path_factory.mktemp("models") / "one-layer", layers=1, heads=4, kv_heads=2, head_dim=16,
                                 image_size=32, vision_hidden=32, vision_layers=1, vision_heads=2, seed=7)
    return load_vlm(folder, attn_implementation="eager")


@pytest.fixture(scope="module")
def pairs32(probes32):
    spatial = [it for it in probes32 if it.has_counterfactual]
    assert len(spatial) >= 6
    return probes32, spatial[:6]


@pytest.fixture(scope="module")
def organism():
    if not (DEFAULT_MODEL / "config.json").is_file():
        pytest.skip("the organism is not built in assets/")
    return load_vlm(DEFAULT_MODEL, attn_implementation="eager")


# ---------------------------------------------------------------- DLA


def test_dla_sums_to_the_logit_difference_on_the_organism(organism):
    ps = cached_probes(n=40, seed=5)
    r = direct_logit_attribution(organism, ps, batch_size=16)
    assert r.heads.shape == (40, 6, 8) and r.mlp.shape == (40, 6) and r.embed.shape == (40,)
    assert r.error < 1e-4, r.error
    assert set(r.foil_kind) == {"counterfactual", "best wrong option"}  # both kinds of probe are in the set
    assert float(r.logit_diff.abs().min()) > 0 and float(r.heads.abs().max()) > 1e-3  # something to decompose
    assert float(r.bias.abs().max()) == 0.0  # Llama: no o_proj or lm_head bias
    for p, it in enumerate(r.items):  # the foil: the counterfactual's answer, else the best wrong option at the clean run
        if it.has_counterfactual:
            assert r.foil_kind[p] == "counterfactual"


@pytest.mark.parametrize("key", ["qwen2_vl", "gemma3"])
def test_dla_sums_to_the_logit_difference_on_tiny_families(key, tmp_path_factory, probes32):
    from workbench.models.scaffold import build_family_folder

    vlm = load_vlm(build_family_folder(key, tmp_path_factory.mktemp(key) / key), attn_implementation="eager")
    r = direct_logit_attribution(vlm, probes32, list(probes32.items[:6]), batch_size=4)
    assert r.heads.shape == (6, 2, 4)
    assert r.error < 1e-4, r.error
    assert float(r.heads.abs().max()) > 1e-4
    assert len(r.frozen_norms) == (2 if key == "gemma3" else 1)


def test_dla_refuses_mllama(tmp_path_factory, probes32):
    from workbench.models.scaffold import build_family_folder

    vlm = load_vlm(build_family_folder("mllama", tmp_path_factory.mktemp("mllama") / "mllama"), attn_implementation="eager")
    with pytest.raises(WorkbenchError, match="not defined for Mllama.*gated"):
        direct_logit_attribution(vlm, probes32, list(probes32.items[:2]))


def test_one_heads_term_is_what_its_removal_from_the_final_residual_costs(llava_vlm, probes32):
    """Oracle from the norm's own weight: LD(x) − LD(x − c_h), both with rms(x) of the clean run."""
    items = list(probes32.items[:4])
    r = direct_logit_attribution(llava_vlm, probes32, items)
    model, site = llava_vlm.model, llava_vlm.site
    layer, head, d = 0, 2, site.head_dim
    got = {}
    norm = model.model.language_model.norm
    hooks = [site.attn_out(model, layer).register_forward_pre_hook(lambda m, a: got.__setitem__("z", a[0][:, -1].clone())),
             norm.register_forward_pre_hook(lambda m, a: got.__setitem__("x", a[0][:, -1].clone()))]
    try:
        with torch.no_grad():
            model(**build_batch(llava_vlm, probes32, items).inputs)
    finally:
        for h in hooks:
            h.remove()
    w_o = site.attn_out(model, layer).weight
    c = got["z"][:, head * d:(head + 1) * d] @ w_o[:, head * d:(head + 1) * d].T  # [B, hidden]
    x = got["x"]
    rms = torch.sqrt(x.pow(2).mean(-1, keepdim=True) + norm.variance_epsilon)
    w_u = model.lm_head.weight
    dw = w_u[r.answer] - w_u[r.foil]
    ld = lambda v: ((norm.weight * v / rms) * dw).sum(-1)  # noqa: E731
    expected = ld(x) - ld(x - c)
    assert torch.allclose(r.heads[:, layer, head], expected, atol=1e-5), (r.heads[:, layer, head], expected)
    assert torch.allclose(ld(x), r.logit_diff, atol=1e-4)


# ---------------------------------------------------------------- path patching


def _recorded_z(vlm, inputs, layer):
    got = {}
    h = vlm.site.attn_out(vlm.model, layer).register_forward_pre_hook(lambda m, a: got.__setitem__("z", a[0][:, -1].clone()))
    try:
        with torch.no_grad():
            logits = vlm.model(**inputs).logits[:, -1]
    finally:
        h.remove()
    return got["z"], logits


def _run_with_slice(vlm, inputs, layer, head, values):
    """The base run with head (layer, head)'s last-token o_proj input slice replaced by ``values [B, head_dim]``."""
    d = vlm.site.head_dim

    def pre(m, a):
        x = a[0].clone()
        x[:, -1, head * d:(head + 1) * d] = values
        return (x,)

    h = vlm.site.attn_out(vlm.model, layer).register_forward_pre_hook(pre)
    try:
        with torch.no_grad():
            return vlm.model(**inputs).logits[:, -1]
    finally:
        h.remove()


def _full_patch_ld(vlm, pair, layer, head):
    """Activation patching of one head at the last token, by hand: its source slice into the base run."""
    d = vlm.site.head_dim
    z_src, _ = _recorded_z(vlm, pair.source.inputs, layer)
    return pair_logit_diff(_run_with_slice(vlm, pair.base.inputs, layer, head, z_src[:, head * d:(head + 1) * d]), pair)


@pytest.mark.parametrize("direction,engine", [("noising", "naive"), ("denoising", "naive"), ("noising", "packed")])
def test_one_layer_path_to_the_logits_is_activation_patching(one_layer_vlm, pairs32, direction, engine):
    ps, items = pairs32
    r = path_patch(one_layer_vlm, ps, "logits", items, direction=direction, batch_size=4, engine=engine)
    pair = pair_batch(one_layer_vlm, ps, items, direction)
    assert r.senders.all() and r.effect.shape == (6, 1, 4)
    for head in range(4):
        full = _full_patch_ld(one_layer_vlm, pair, 0, head)
        assert torch.allclose(r.delta[:, 0, head] + r.base_ld, full, atol=1e-5), (head, r.delta[:, 0, head], full)
    assert float(r.delta.abs().max()) > 1e-3, "the patch must change something"
    base = pair_logit_diff(_recorded_z(one_layer_vlm, pair.base.inputs, 0)[1], pair)
    src = pair_logit_diff(_recorded_z(one_layer_vlm, pair.source.inputs, 0)[1], pair)
    assert torch.allclose(r.base_ld, base, atol=1e-5) and torch.allclose(r.source_ld, src, atol=1e-5)
    expected = (r.delta[:, 0, 1]) / (src - base)
    assert torch.allclose(r.effect[:, 0, 1], expected, atol=1e-4, equal_nan=True)


def test_last_layer_heads_path_to_the_logits_is_activation_patching(organism):
    ps = cached_probes(n=40, seed=5)
    items = [it for it in ps if it.has_counterfactual][:4]
    senders = [(5, h) for h in range(8)]
    r = path_patch(organism, ps, "logits", items, senders=senders)
    pair = pair_batch(organism, ps, items, "noising")
    for _, head in senders:
        assert torch.allclose(r.delta[:, 5, head] + r.base_ld, _full_patch_ld(organism, pair, 5, head), atol=1e-4)
    assert r.senders.sum() == 8 and torch.isnan(r.effect[:, :5]).all()


@pytest.mark.parametrize("engine", ["naive", "packed"])
def test_frozen_mlps_leave_the_closed_form_direct_path(one_layer_vlm, pairs32, engine):
    """freeze_mlps: LD = (W_U[a] − W_U[f]) · RMSNorm(x_base + Δ), Δ = (z_src − z_base)_h W_O[:, h]ᵀ, at the last token."""
    ps, items = pairs32
    vlm, layer, head, d = one_layer_vlm, 0, 3, one_layer_vlm.site.head_dim
    r = path_patch(vlm, ps, "logits", items, senders=[(layer, head)], freeze_mlps=True, engine=engine)
    pair = pair_batch(vlm, ps, items, "noising")
    z_base, _ = _recorded_z(vlm, pair.base.inputs, layer)
    z_src, _ = _recorded_z(vlm, pair.source.inputs, layer)
    model, got = vlm.model, {}
    norm = model.model.language_model.norm
    h = norm.register_forward_pre_hook(lambda m, a: got.__setitem__("x", a[0][:, -1].clone()))
    try:
        with torch.no_grad():
            model(**pair.base.inputs)
    finally:
        h.remove()
    w_o = vlm.site.attn_out(model, layer).weight[:, head * d:(head + 1) * d]
    x = got["x"] + (z_src - z_base)[:, head * d:(head + 1) * d] @ w_o.T
    y = norm.weight * x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + norm.variance_epsilon)
    expected = ((model.lm_head.weight[pair.answer] - model.lm_head.weight[pair.foil]) * y).sum(-1)
    assert torch.allclose(r.delta[:, layer, head] + r.base_ld, expected, atol=1e-5)
    unfrozen = path_patch(vlm, ps, "logits", items, senders=[(layer, head)])
    assert float((unfrozen.delta - r.delta)[:, layer, head].abs().max()) > 1e-5, "the MLP path must matter here"


@pytest.mark.parametrize("engine", ["naive", "packed"])
def test_path_to_receiver_heads_is_the_two_step_algorithm(llava_vlm, pairs32, engine):
    """2 layers: sender (0, s) → receiver (1, r), by hand. Step 1: the base run with the sender's slice from the source
    (layer 0's other heads are base anyway), recording what head (1, r) computes; step 2: the base run with only that
    receiver's slice replaced by the recording."""
    ps, items = pairs32
    vlm, d = llava_vlm, llava_vlm.site.head_dim
    receivers = [(1, 2)]
    r = path_patch(vlm, ps, receivers, items, senders=[(0, 0), (0, 3), (1, 1)], engine=engine)
    pair = pair_batch(vlm, ps, items, "noising")
    z_src, _ = _recorded_z(vlm, pair.source.inputs, 0)
    for s in (0, 3):
        got = {}

        def patch0(m, a, s=s):
            x = a[0].clone()
            x[:, -1, s * d:(s + 1) * d] = z_src[:, s * d:(s + 1) * d]
            return (x,)

        def keep1(m, a, got=got):
            got["z"] = a[0][:, -1].clone()

        hooks = [vlm.site.attn_out(vlm.model, 0).register_forward_pre_hook(patch0),
                 vlm.site.attn_out(vlm.model, 1).register_forward_pre_hook(keep1)]
        try:
            with torch.no_grad():
                vlm.model(**pair.base.inputs)
        finally:
            for h in hooks:
                h.remove()
        step2 = _run_with_slice(vlm, pair.base.inputs, 1, 2, got["z"][:, 2 * d:3 * d])
        expected = pair_logit_diff(step2, pair)
        assert torch.allclose(r.delta[:, 0, s] + r.base_ld, expected, atol=1e-5), (s, r.delta[:, 0, s], expected)
    assert float(r.delta[:, 0, [0, 3]].abs().max()) > 1e-5, "the path must carry something"
    assert float(r.delta[:, 1, 1].abs().max()) == 0.0  # a sender in the receivers' layer has no path to them
    assert torch.isnan(r.delta[:, 0, 1]).all()  # not a sender


@pytest.mark.parametrize("receivers,freeze", [("logits", False), ([(3, 1), (5, 6)], False), ([(4, 2)], True)])
def test_packed_and_naive_engines_agree_on_the_organism(organism, receivers, freeze):
    ps = cached_probes(n=40, seed=5)
    items = [it for it in ps if it.has_counterfactual][:5]
    senders = [(0, 1), (1, 2), (2, 0), (3, 1), (4, 5), (5, 6)]
    runs = [path_patch(organism, ps, receivers, items, senders=senders, freeze_mlps=freeze, batch_size=3, engine=engine)
            for engine in ("naive", "packed")]
    naive, packed = runs
    assert torch.equal(naive.senders, packed.senders)
    got, want = packed.delta[:, naive.senders], naive.delta[:, naive.senders]
    assert torch.allclose(got, want, atol=1e-5 * max(1.0, float(naive.base_ld.abs().max()))), (got - want).abs().max()
    assert float(want.abs().max()) > 1e-3


def test_path_patching_refusals(llava_vlm, pairs32):
    ps, items = pairs32
    with pytest.raises(WorkbenchError, match="out of range"):
        path_patch(llava_vlm, ps, [(2, 0)], items)
    with pytest.raises(WorkbenchError, match="unknown receivers"):
        path_patch(llava_vlm, ps, "logit", items)
    with pytest.raises(WorkbenchError, match="no receiver heads"):
        path_patch(llava_vlm, ps, [], items)
    with pytest.raises(WorkbenchError, match="unknown engine"):
        path_patch(llava_vlm, ps, "logits", items, engine="fast")
    with pytest.raises(WorkbenchError, match="no counterfactual"):
        path_patch(llava_vlm, ps, "logits", [it for it in ps if not it.has_counterfactual][:2])


# ---------------------------------------------------------------- CLI


def test_cli_dla_and_path_write_their_files(llava_folder, probes32, tmp_path):
    folder = probes32.save(tmp_path / "probes")
    out = tmp_path / "dla.csv"
    res = runner.invoke(app, ["causal", "dla", "--model", str(llava_folder), "--probes", str(folder), "--out", str(out),
                              "--limit", "5"])
    assert res.exit_code == 0, res.output
    import pandas as pd

    frame = pd.read_csv(out)
    assert len(frame) == 5 * (2 * 4 + 2 + 2) and set(frame["component"]) == {"head", "mlp", "embed", "bias"}
    sums = frame.groupby("probe_id").agg(total=("value", "sum"), ld=("logit_diff", "first"))
    assert (sums["total"] - sums["ld"]).abs().max() < 1e-4
    assert "decomposition error" in res.output and "L" in res.output
    out = tmp_path / "path.json"
    res = runner.invoke(app, ["causal", "path", "--model", str(llava_folder), "--probes", str(folder), "--out", str(out),
                              "--receivers", "L1H0,L1H2", "--limit", "4"])
    assert res.exit_code == 0, res.output
    import json

    data = json.loads(out.read_text())
    assert data["receivers"] == [[1, 0], [1, 2]] and len(data["mean"]) == 2 and len(data["mean"][0]) == 4
    assert all(v in (0.0, None) for v in data["mean"][1])  # layer 1 sends nothing to layer-1 receivers
    res = runner.invoke(app, ["causal", "path", "--model", str(llava_folder), "--probes", str(folder), "--receivers", "L9H0"])
    assert res.exit_code == 2 and "out of range" in res.output
