"""The pure edit functions, against hand-computed arrays, and the frozen objects' validation."""

import pytest
import torch

from workbench.errors import WorkbenchError
from workbench.interventions.core import (
    HeadScale,
    MeanAblation,
    MlpScale,
    check_left_padded,
    edit_heads,
    edit_mlp,
    head_layers,
    mlp_layers,
)
from workbench.models.sites import Site, SiteRow

SITE = Site(SiteRow("test", ("t",), "layers"), n_layers=2, n_heads=3, n_kv_heads=1, head_dim=2, hidden=6)


def z_ones():
    return torch.ones(1, 2, 3, 2)  # [batch, seq, head, head_dim]


def test_headscale_last_token_only():
    iv = HeadScale.at(SITE, {(1, 2): 0.0, (1, 0): 3.0})
    out = edit_heads(z_ones(), 1, [iv])
    expected = torch.ones(1, 2, 3, 2)
    expected[0, 1, 2] = 0.0
    expected[0, 1, 0] = 3.0
    assert torch.equal(out, expected)
    assert torch.equal(edit_heads(z_ones(), 0, [iv]), torch.ones(1, 2, 3, 2))  # other layer untouched


def test_headscale_all_positions():
    out = edit_heads(z_ones(), 0, [HeadScale.at(SITE, [(0, 1)], alpha=0.5, positions="all")])
    expected = torch.ones(1, 2, 3, 2)
    expected[:, :, 1] = 0.5
    assert torch.equal(out, expected)


def test_batched_alpha_gives_each_row_its_variant():
    alpha = torch.ones(2, 2, 3)
    alpha[0, 0, 0] = 0.0
    alpha[1, 0, 2] = 2.0
    out = edit_heads(torch.ones(2, 2, 3, 2), 0, [HeadScale(alpha)])
    assert out[0, 1, 0].tolist() == [0, 0] and out[0, 1, 2].tolist() == [1, 1]
    assert out[1, 1, 2].tolist() == [2, 2] and out[1, 1, 0].tolist() == [1, 1]
    assert torch.equal(out[:, 0], torch.ones(2, 3, 2))


def test_mean_ablation_replaces_with_the_mean():
    means = torch.arange(12.0).reshape(2, 3, 2)
    out = edit_heads(z_ones(), 1, [MeanAblation(((1, 1),), means)])
    assert out[0, 1, 1].tolist() == [8.0, 9.0] and out[0, 0, 1].tolist() == [1.0, 1.0]
    assert torch.equal(out[0, :, 0], torch.ones(2, 2))
    out = edit_heads(z_ones(), 1, [MeanAblation(((1, 1),), means, positions="all")])
    assert out[0, 0, 1].tolist() == [8.0, 9.0]


def test_mlp_scale():
    y = torch.ones(1, 3, 4)
    out = edit_mlp(y, 1, [MlpScale.at(SITE, {1: 0.25})])
    assert out[0, 2].tolist() == [0.25] * 4 and out[0, :2].eq(1).all()
    assert torch.equal(edit_mlp(y, 0, [MlpScale.at(SITE, {1: 0.25})]), y)


def test_edits_are_pure_and_differentiable():
    z = z_ones()
    alpha = torch.ones(2, 3, requires_grad=True)
    out = edit_heads(z, 0, [HeadScale(alpha)])
    assert torch.equal(z, z_ones())
    out.sum().backward()
    assert alpha.grad[0].tolist() == [2.0, 2.0, 2.0] and alpha.grad[1].eq(0).all()  # last token × head_dim 2


def test_layers_touched():
    assert head_layers([HeadScale.identity(SITE)]) is None  # every layer, identity included
    assert head_layers([MeanAblation(((1, 0),), torch.zeros(2, 3, 2))]) == [1]
    assert mlp_layers([HeadScale.identity(SITE)]) == [] and mlp_layers([MlpScale(torch.ones(2))]) is None


@pytest.mark.parametrize("make,msg", [
    (lambda: HeadScale.at(SITE, [(2, 0)]), "head L2H0 is out of range: the model has 2 layers"),
    (lambda: HeadScale.at(SITE, [(0, 3)]), r"3 query heads \(0–2\)"),
    (lambda: HeadScale.at(SITE, [(-1, 0)]), "out of range"),
    (lambda: HeadScale(torch.ones(2, 4)).check(SITE), r"alpha has shape \[2, 4\], but the model has 2 layers × 3 query heads"),
    (lambda: HeadScale(torch.ones(3, 2, 3)).check(SITE, batch=2), "3 variants for a batch of 2"),
    (lambda: HeadScale(torch.ones(6)), "must be a tensor"),
    (lambda: HeadScale(torch.ones(2, 3), positions="first"), "unknown positions 'first'"),
    (lambda: MlpScale(torch.ones(3)).check(SITE), "the model has 2 layers"),
    (lambda: MlpScale.at(SITE, {5: 0.0}), "layer 5 is out of range"),
    (lambda: MeanAblation(((0, 0),), torch.zeros(2, 3, 5)).check(SITE), r"the model needs \[2, 3, 2\]"),
])
def test_bad_input_gets_one_clear_error(make, msg):
    with pytest.raises(WorkbenchError, match=msg):
        make()


def test_right_padding_is_refused():
    check_left_padded(torch.tensor([[0, 1, 1], [1, 1, 1]]))
    with pytest.raises(WorkbenchError, match="right-padded"):
        check_left_padded(torch.tensor([[1, 1, 0], [1, 1, 1]]))


def test_per_token_alpha_for_packed_variants():
    alpha = torch.ones(1, 2, 2, 3)  # [batch|1, seq, layer, head]
    alpha[0, 0, 1, 2] = 0.0  # token 0 runs "L1H2 ablated"
    alpha[0, 1, 1, 0] = 4.0  # token 1 runs "L1H0 × 4"
    out = edit_heads(torch.ones(2, 2, 3, 2), 1, [HeadScale(alpha, positions="all")])
    assert out[:, 0, 2].eq(0).all() and out[:, 0, :2].eq(1).all()
    assert out[:, 1, 0].eq(4).all() and out[:, 1, 1:].eq(1).all()
    mlp = torch.ones(1, 2, 2)
    mlp[0, 1, 0] = 0.5
    y = edit_mlp(torch.ones(1, 2, 4), 0, [MlpScale(mlp, positions="all")])
    assert y[0, 0].eq(1).all() and y[0, 1].eq(0.5).all()
    with pytest.raises(WorkbenchError, match="must be a tensor"):
        HeadScale(alpha, positions="last")  # per-token factors only make sense on all positions
