"""Attention-edge edits as pure functions: EdgeScale / ImageTemperature against attention computed by hand.

``edited_attention`` is checked on small random tensors against the textbook formula written out here
(softmax of q·kᵀ·scale + mask, image keys masked or divided by T for the edited head and row, then
renormalised), and against transformers' own ``eager_attention_forward`` where nothing is edited.
"""

import pytest
import torch
from transformers.models.llama.modeling_llama import eager_attention_forward

from workbench.errors import WorkbenchError
from workbench.interventions.attention import EdgeScale, ImageTemperature, check_backend, edited_attention

B, H, KV, S, D = 2, 4, 2, 7, 8
SCALE = D ** -0.5
IMG = torch.tensor([[False, True, True, True, False, False, False],
                    [False, False, True, True, True, True, False]])  # row 1: 4 image keys


@pytest.fixture(scope="module")
def qkv():
    g = torch.Generator().manual_seed(0)
    return (torch.randn(B, H, S, D, generator=g), torch.randn(B, KV, S, D, generator=g), torch.randn(B, KV, S, D, generator=g))


def causal_bias(pad_first: int = 0) -> torch.Tensor:
    """Additive eager mask ``[B, 1, S, S]``: causal, and row 0's first ``pad_first`` keys padding."""
    allowed = torch.ones(S, S, dtype=torch.bool).tril()[None, None].repeat(B, 1, 1, 1)
    allowed[0, :, :, :pad_first] = False
    return torch.where(allowed, 0.0, torch.finfo(torch.float32).min)


def by_hand(q, k, v, bias, head_edit):
    """Textbook attention; ``head_edit(h, scores [B, S, S]) -> probs [B, S, S]`` for every head."""
    k, v = k.repeat_interleave(H // KV, dim=1), v.repeat_interleave(H // KV, dim=1)
    outs = []
    for h in range(H):
        scores = q[:, h] @ k[:, h].transpose(1, 2) * SCALE  # [B, S, S]
        probs = head_edit(h, scores, bias[:, 0])
        outs.append(probs @ v[:, h])  # [B, S, D]
    return torch.stack(outs, dim=2)  # [B, S, H, D]


class _Module(torch.nn.Module):
    num_key_value_groups = H // KV


def test_no_edit_is_transformers_eager_bit_for_bit(qkv):
    q, k, v = qkv
    bias = causal_bias(pad_first=2)
    want, want_w = eager_attention_forward(_Module().eval(), q, k, v, bias, SCALE)
    # an edit on head 1 only: every other head and row must be eager's exactly
    iv = EdgeScale.at(_site(), [(0, 1)], 0.0)
    got, got_w = edited_attention(q, k, v, bias, SCALE, 0, [iv], IMG, n_rep=H // KV)
    keep = torch.ones(H, dtype=torch.bool)
    keep[1] = False
    assert torch.equal(got[:, :, keep], want[:, :, keep])
    assert torch.equal(got[:, :-1], want[:, :-1])  # positions "last": earlier rows untouched
    assert torch.equal(got_w[:, keep], want_w[:, keep])


def _site():
    from workbench.models.sites import Site, site_row

    return Site(site_row("llava"), n_layers=2, n_heads=H, n_kv_heads=KV, head_dim=D, hidden=H * D)


def test_knock_out_masks_the_image_keys_of_one_head_and_renormalises(qkv):
    q, k, v = qkv
    bias = causal_bias(pad_first=2)
    iv = EdgeScale.at(_site(), [(0, 1)], 0.0)
    got, w = edited_attention(q, k, v, bias, SCALE, 0, [iv], IMG, n_rep=H // KV)

    def edit(h, scores, mask):
        p = torch.softmax(scores + mask, dim=-1)
        if h == 1:
            last = p[:, -1] * (~IMG).float()
            p = torch.cat([p[:, :-1], (last / last.sum(-1, keepdim=True))[:, None]], dim=1)
        return p

    want = by_hand(q, k, v, bias, edit)
    assert torch.allclose(got, want, atol=1e-6)
    assert float(w[:, 1, -1][IMG].abs().max()) == 0.0  # no weight left on the image
    assert torch.allclose(w[:, 1, -1].sum(-1), torch.ones(B))
    # the same knock-out as an additive −inf on those keys (a per-head 4D mask), computed another way
    masked = bias.repeat(1, H, 1, 1)
    masked[:, 1, -1] = masked[:, 1, -1].masked_fill(IMG, torch.finfo(torch.float32).min)
    ref = torch.softmax(q @ k.repeat_interleave(2, 1).transpose(2, 3) * SCALE + masked, -1) @ v.repeat_interleave(2, 1)
    assert torch.allclose(got, ref.transpose(1, 2), atol=1e-6)


def test_alpha_scales_image_weight_like_a_log_alpha_logit_shift(qkv):
    q, k, v = qkv
    bias = causal_bias()
    alpha = torch.ones(2, H)
    alpha[1, 2] = 0.3
    got, _ = edited_attention(q, k, v, bias, SCALE, 1, [EdgeScale(alpha)], IMG, n_rep=2)

    def edit(h, scores, mask):
        if h == 2:
            scores = scores.clone()
            scores[:, -1] = scores[:, -1] + torch.log(torch.tensor(0.3)) * IMG.float()
        return torch.softmax(scores + mask, dim=-1)

    assert torch.allclose(got, by_hand(q, k, v, bias, edit), atol=1e-6)


@pytest.mark.parametrize("positions", ["last", "all"])
def test_temperature_divides_the_image_logits_before_the_softmax(qkv, positions):
    q, k, v = qkv
    bias = causal_bias(pad_first=1)
    t = torch.ones(2, H)
    t[0, 0], t[0, 3] = 0.5, 3.0
    got, _ = edited_attention(q, k, v, bias, SCALE, 0, [ImageTemperature(t, positions=positions)], IMG, n_rep=2)

    def edit(h, scores, mask):
        temp = {0: 0.5, 3: 3.0}.get(h, 1.0)
        divisor = torch.where(IMG[:, None, :], torch.tensor(temp), torch.tensor(1.0)).expand(B, S, S).clone()
        if positions == "last":
            divisor[:, :-1] = 1.0
        return torch.softmax(scores / divisor + mask, dim=-1)

    assert torch.allclose(got, by_hand(q, k, v, bias, edit), atol=1e-6)


def test_identity_factors_change_nothing(qkv):
    q, k, v = qkv
    bias = causal_bias(pad_first=2)
    want, _ = eager_attention_forward(_Module().eval(), q, k, v, bias, SCALE)
    ones = torch.ones(2, H)
    got, _ = edited_attention(q, k, v, bias, SCALE, 0, [EdgeScale(ones), ImageTemperature(ones)], IMG, n_rep=2)
    assert torch.equal(got, want)


def test_mask_formats_agree(qkv):
    """The model's mask may come additive (eager), boolean (sdpa) or absent (sdpa, plain causal): one answer."""
    q, k, v = qkv
    iv = EdgeScale.at(_site(), [(0, 0), (0, 3)], 0.0)
    additive, _ = edited_attention(q, k, v, causal_bias(), SCALE, 0, [iv], IMG, n_rep=2)
    boolean, _ = edited_attention(q, k, v, torch.ones(S, S, dtype=torch.bool).tril()[None, None], SCALE, 0, [iv], IMG, n_rep=2)
    absent, _ = edited_attention(q, k, v, None, SCALE, 0, [iv], IMG, n_rep=2)
    assert torch.allclose(additive, boolean, atol=1e-6) and torch.allclose(additive, absent, atol=1e-6)


def test_per_variant_factors_edit_each_batch_row_on_its_own(qkv):
    q, k, v = qkv
    alpha = torch.ones(B, 2, H)
    alpha[1, 0, 2] = 0.0  # row 1 only
    got, _ = edited_attention(q, k, v, causal_bias(), SCALE, 0, [EdgeScale(alpha)], IMG, n_rep=2)
    ref, _ = edited_attention(q, k, v, causal_bias(), SCALE, 0, [EdgeScale.at(_site(), [(0, 2)], 0.0)], IMG, n_rep=2)
    plain, _ = edited_attention(q, k, v, causal_bias(), SCALE, 0, [], IMG, n_rep=2)
    assert torch.equal(got[0], plain[0]) and torch.allclose(got[1], ref[1], atol=1e-7)


def test_keys_beyond_the_mask_are_not_image_and_a_longer_mask_is_refused(qkv):
    q, k, v = qkv
    iv = EdgeScale.at(_site(), [(0, 1)], 0.0)
    short, _ = edited_attention(q, k, v, causal_bias(), SCALE, 0, [iv], IMG[:, :5], n_rep=2)
    full, _ = edited_attention(q, k, v, causal_bias(), SCALE, 0, [iv], torch.cat([IMG[:, :5], torch.zeros(B, 2, dtype=bool)], 1),
                               n_rep=2)
    assert torch.equal(short, full)
    with pytest.raises(WorkbenchError, match="covers 9 positions"):
        edited_attention(q, k, v, causal_bias(), SCALE, 0, [iv], torch.zeros(B, 9, dtype=bool), n_rep=2)


@pytest.mark.parametrize("make, match", [
    (lambda: EdgeScale(torch.ones(2, 4) * -1), "≥ 0"),
    (lambda: EdgeScale(torch.ones(4)), "must be a tensor"),
    (lambda: EdgeScale(torch.ones(1, 3, 2, 4)), "must be a tensor"),  # per-token factors need positions all
    (lambda: EdgeScale(torch.full((2, 4), float("nan"))), "NaN"),
    (lambda: EdgeScale(torch.ones(2, 4), positions="first"), "unknown positions"),
    (lambda: EdgeScale(torch.ones(2, 4), image_keys=torch.ones(2, 5)), "bool tensor"),
    (lambda: ImageTemperature(torch.zeros(2, 4)), "> 0"),
    (lambda: ImageTemperature(torch.ones(2, 4), mode="adaptive"), "unknown ImageTemperature mode"),
])
def test_bad_inputs_are_refused_in_one_line(make, match):
    with pytest.raises(WorkbenchError, match=match) as e:
        make()
    assert "\n" not in str(e.value.args[0])


def test_shapes_are_checked_against_the_model_and_the_batch():
    site = _site()
    with pytest.raises(WorkbenchError, match="2 layers × 4 query heads"):
        EdgeScale(torch.ones(3, 4)).check(site)
    with pytest.raises(WorkbenchError, match="3 variants for a batch of 2"):
        ImageTemperature(torch.ones(3, 2, 4)).check(site, batch=2)
    with pytest.raises(WorkbenchError, match="image_keys has 3 rows"):
        EdgeScale(torch.ones(2, 4), torch.ones(3, 5, dtype=torch.bool)).check(site, batch=2)
    with pytest.raises(WorkbenchError, match="out of range"):
        EdgeScale.at(site, [(2, 0)])


def test_other_backends_refuse_edges():
    check_backend([EdgeScale(torch.ones(2, 4))], "torch")
    with pytest.raises(WorkbenchError, match="torch backend"):
        check_backend([EdgeScale(torch.ones(2, 4))], "nnsight")
