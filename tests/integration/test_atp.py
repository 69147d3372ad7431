"""Attribution patching against oracles built here from plain hooks (independent of workbench.causal.atp):

- first order: moving one site ε of the way from its base output to its source output changes LD by
  ε·AtP + O(ε²) — checked by central differences, whose error falls as ε² (so a wrong gradient, a wrong
  Δ or a transposed head axis fails);
- a planted head: one head's ``o_proj`` columns × 30 make it carry the pair's whole logit difference, so
  its normalised effect is ≈ 1 and the top of both the AtP ranking and the exact patching ranking;
- normalisation and dropped probes by hand.
"""

from __future__ import annotations

import pytest
import torch

from workbench.causal.atp import atp, pair_estimates
from workbench.causal.pairs import pair_batch, pair_logit_diff
from workbench.errors import WorkbenchError
from workbench.models.load import load_vlm
from workbench.sweeps.spec import SweepSpec


@pytest.fixture(scope="module")
def paired(probes32):
    """The probes of probes32 with a counterfactual partner (12: relation and verify)."""
    items = [it for it in probes32.items if it.has_counterfactual]
    assert len(items) >= 8
    return items


def _run(vlm, inputs, per_head: bool, positions: str = "last", edit=None):
    """Oracle forward: last-token logits and every site's output (``{layer: [batch, seq, head, hd]`` or
    ``[batch, seq, hidden]}``); ``edit = (layer, head, value)`` replaces that site's output by ``value``
    (``[batch, head_dim]`` at the last token, or ``[batch, seq, head_dim]`` with positions="all"; head
    is ignored for MLPs)."""
    site, rec, handles = vlm.site, {}, []

    def change(y, layer):
        rec[layer] = y.detach().clone()
        if edit is None or edit[0] != layer:
            return y
        y = y.clone()
        idx = (slice(None), -1) if positions == "last" else (slice(None), slice(None))
        y[idx + ((edit[1],) if per_head else ())] = edit[2]
        return y

    for layer in range(site.n_layers):
        if per_head:
            def pre(m, args, layer=layer):
                x = args[0]
                return (change(x.view(*x.shape[:-1], site.n_heads, site.head_dim), layer).reshape(x.shape), *args[1:])

            handles.append(site.attn_out(vlm.model, layer).register_forward_pre_hook(pre))
        else:
            handles.append(site.mlp(vlm.model, layer).register_forward_hook(lambda m, a, out, layer=layer: change(out, layer)))
    try:
        with torch.no_grad():
            return vlm.model(**inputs).logits[:, -1].float(), rec
    finally:
        for h in handles:
            h.remove()


def _site(z, per_head: bool, head: int, positions: str):
    """One site's output out of a recorded layer output."""
    z = z[:, -1] if positions == "last" else z
    return z[..., head, :] if per_head else z


def _central_difference(vlm, pair, per_head: bool, positions: str, eps: float) -> torch.Tensor:
    """``[batch, layer, head]`` (``[batch, layer]``): (LD(z_b + εΔ) − LD(z_b − εΔ)) / 2ε per site."""
    _, zs = _run(vlm, pair.source.inputs, per_head, positions)
    _, zb = _run(vlm, pair.base.inputs, per_head, positions)
    heads = range(vlm.site.n_heads) if per_head else [0]
    out = torch.zeros(len(pair), vlm.site.n_layers, len(heads))
    for layer in range(vlm.site.n_layers):
        for h in heads:
            b, s = _site(zb[layer], per_head, h, positions), _site(zs[layer], per_head, h, positions)
            up = pair_logit_diff(_run(vlm, pair.base.inputs, per_head, positions, (layer, h, b + eps * (s - b)))[0], pair)
            dn = pair_logit_diff(_run(vlm, pair.base.inputs, per_head, positions, (layer, h, b - eps * (s - b)))[0], pair)
            out[:, layer, h] = (up - dn) / (2 * eps)
    return out if per_head else out[..., 0]


@pytest.mark.parametrize("direction", ["noising", "denoising"])
@pytest.mark.parametrize("per_head", [True, False], ids=["heads", "mlp"])
def test_first_order_term_matches_central_differences(llava_vlm, probes32, paired, direction, per_head):
    pair = pair_batch(llava_vlm, probes32, paired[:8], direction)
    est, ld_base, ld_src = pair_estimates(llava_vlm, pair, per_head)
    assert est.shape == ((8, 2, 4) if per_head else (8, 2))
    scale = est.abs().max()
    assert scale > 0.05, "the estimates should not vanish on these pairs (else the check below is empty)"
    err_big = (_central_difference(llava_vlm, pair, per_head, "last", 0.3) - est).abs().max()
    err_small = (_central_difference(llava_vlm, pair, per_head, "last", 0.1) - est).abs().max()
    assert err_small <= 2e-3 * scale
    assert err_small < err_big / 4, "the error of a central difference falls as ε² when the gradient is the true one"
    base_logits, _ = _run(llava_vlm, pair.base.inputs, per_head)
    assert torch.allclose(ld_base, pair_logit_diff(base_logits, pair), atol=1e-5)  # the δ leaves change nothing


def test_all_positions_first_order_term(llava_vlm, probes32, paired):
    swaps = [it for it in paired if it.cf_kind == "swap_objects"][:4]  # same question: the pairs align
    pair = pair_batch(llava_vlm, probes32, swaps, "noising", positions="all")
    est, _, _ = pair_estimates(llava_vlm, pair, True, positions="all")
    fd = _central_difference(llava_vlm, pair, True, "all", 0.1)
    assert (fd - est).abs().max() <= 5e-3 * est.abs().max()
    last, _, _ = pair_estimates(llava_vlm, pair, True)
    assert not torch.allclose(est, last, atol=1e-3), "patching every token is not patching the last one"


def test_normalised_like_the_exact_sweep_with_dropped_probes(llava_vlm, probes32, paired):
    spec = SweepSpec(intervention="patch", direction="noising")
    eff = atp(llava_vlm, probes32, spec, items=paired, batch_size=5)  # 12 probes in batches of 5, 5, 2
    assert eff.shape == (len(paired), 1, 2, 4)
    pair = pair_batch(llava_vlm, probes32, paired, "noising")
    est, ld_base, ld_src = pair_estimates(llava_vlm, pair, True)
    gap = ld_src - ld_base
    torch.testing.assert_close(eff[:, 0], est / gap[:, None, None], atol=1e-4, rtol=1e-3)
    cut = float(gap.abs().median())  # about half the probes fall below it
    dropped = atp(llava_vlm, probes32, SweepSpec(intervention="patch", direction="noising", min_gap=cut), items=paired)
    nan_rows = torch.isnan(dropped[:, 0]).all(-1).all(-1)
    assert torch.equal(nan_rows, gap.abs() < cut) and 0 < int(nan_rows.sum()) < len(paired)
    torch.testing.assert_close(dropped[~nan_rows], eff[~nan_rows])


@pytest.mark.parametrize("planted", [(0, 3), (1, 0)])
def test_a_planted_head_tops_the_ranking(llava_folder, probes32, paired, planted):
    vlm = load_vlm(llava_folder, attn_implementation="eager")  # a copy: the surgery must not reach other tests
    d = vlm.site.head_dim
    with torch.no_grad():
        vlm.site.attn_out(vlm.model, planted[0]).weight[:, planted[1] * d:(planted[1] + 1) * d] *= 30.0
    for direction in ("noising", "denoising"):
        est = atp(vlm, probes32, SweepSpec(intervention="patch", direction=direction), items=paired)[:, 0].nanmean(0)
        pair = pair_batch(vlm, probes32, paired, direction)
        lb = pair_logit_diff(_run(vlm, pair.base.inputs, True)[0], pair)
        _, zs = _run(vlm, pair.source.inputs, True)
        ls = pair_logit_diff(_run(vlm, pair.source.inputs, True)[0], pair)
        exact = torch.zeros(2, 4)
        for layer in range(2):
            for h in range(4):
                patched = pair_logit_diff(_run(vlm, pair.base.inputs, True, "last", (layer, h, zs[layer][:, -1, h]))[0], pair)
                exact[layer, h] = ((patched - lb) / (ls - lb)).mean()
        flat = planted[0] * 4 + planted[1]
        assert int(est.flatten().argmax()) == flat and int(exact.flatten().argmax()) == flat
        assert abs(float(est[planted]) - 1.0) < 0.15 and abs(float(exact[planted]) - 1.0) < 0.15


def test_a_scaling_spec_is_refused(llava_vlm, probes32, paired):
    with pytest.raises(WorkbenchError, match="estimates a patching sweep"):
        atp(llava_vlm, probes32, SweepSpec(alphas=(0.0,)), items=paired)
