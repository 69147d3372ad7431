"""HeadPatch / MlpPatch as pure edits, against hand-built arrays: which positions and sites are replaced, identity,
zero source = α = 0 scaling, per-copy masks, and the refusals of malformed sources and masks."""

import pytest
import torch

from workbench.errors import WorkbenchError
from workbench.interventions.core import (
    HeadPatch,
    HeadScale,
    MlpPatch,
    MlpScale,
    edit_heads,
    edit_mlp,
    head_layers,
    mlp_layers,
    validate,
)
from workbench.models.sites import Site, SiteRow

SITE = Site(SiteRow("test", ("t",), "layers"), n_layers=2, n_heads=3, n_kv_heads=1, head_dim=2, hidden=6)


def z_base(batch=2, seq=3):
    """``[batch, seq, head, head_dim]`` with every entry distinct: value = 1000·b + 100·s + 10·h + d."""
    b, s, h, d = torch.meshgrid(*(torch.arange(n) for n in (batch, seq, 3, 2)), indexing="ij")
    return (1000 * b + 100 * s + 10 * h + d).float()


def test_headpatch_last_token_replaces_exactly_the_selected_heads_at_the_last_position():
    source = -torch.arange(2 * 2 * 3 * 2).float().reshape(2, 2, 3, 2)  # [batch, layer, head, head_dim]
    iv = HeadPatch.at(SITE, source, [(1, 2), (1, 0)])
    out = edit_heads(z_base(), 1, [iv])
    want = z_base()
    want[:, 2, 2] = source[:, 1, 2]
    want[:, 2, 0] = source[:, 1, 0]
    assert torch.equal(out, want)
    assert torch.equal(edit_heads(z_base(), 0, [iv]), z_base())  # no head of layer 0 selected
    assert head_layers([iv]) == [1] and mlp_layers([iv]) == []


def test_headpatch_all_positions_and_a_per_row_mask():
    source = -torch.ones(2, 3, 2, 3, 2)  # [batch, seq, layer, head, head_dim]
    mask = torch.zeros(2, 2, 3, dtype=torch.bool)  # [batch, layer, head]: row 0 patches head 1 of layer 0, row 1 nothing
    mask[0, 0, 1] = True
    out = edit_heads(z_base(), 0, [HeadPatch(source, mask, "all")])
    want = z_base()
    want[0, :, 1] = -1.0
    assert torch.equal(out, want)


def test_headpatch_per_copy_mask_with_a_broadcast_source_as_the_packed_sweep_uses_it():
    """Copy v (seq position v) patches head v of layer 0 from one last-token source row per batch row."""
    source = -torch.arange(2 * 2 * 3 * 2).float().reshape(2, 1, 2, 3, 2)  # [batch, 1 (every copy), layer, head, head_dim]
    mask = torch.zeros(1, 3, 2, 3, dtype=torch.bool)  # [1, V = seq, layer, head]
    for v in range(3):
        mask[0, v, 0, v] = True
    out = edit_heads(z_base(), 0, [HeadPatch(source, mask, "all")])
    want = z_base()
    for v in range(3):
        want[:, v, v] = source[:, 0, 0, v]
    assert torch.equal(out, want)


def test_patching_with_the_runs_own_outputs_is_the_identity_and_zeros_are_alpha_zero():
    z = z_base()
    own = torch.stack([z[:, -1], z[:, -1]], dim=1)  # [batch, layer, head, head_dim]: the run's last token at both layers
    assert torch.equal(edit_heads(z, 1, [HeadPatch(own, torch.ones(2, 3, dtype=torch.bool))]), z)
    zero = HeadPatch.at(SITE, torch.zeros(2, 2, 3, 2), [(0, 1)])
    assert torch.equal(edit_heads(z, 0, [zero]), edit_heads(z, 0, [HeadScale.at(SITE, [(0, 1)], alpha=0.0)]))
    y = torch.arange(2 * 3 * 6).float().reshape(2, 3, 6)  # [batch, seq, hidden]
    zero_mlp = MlpPatch.at(SITE, torch.zeros(2, 3, 2, 6), [1], positions="all")
    assert torch.equal(edit_mlp(y, 1, [zero_mlp]), edit_mlp(y, 1, [MlpScale.at(SITE, {1: 0.0}, positions="all")]))
    assert torch.equal(edit_mlp(y, 0, [zero_mlp]), y)


def test_mlppatch_last_token():
    y = torch.arange(2 * 3 * 6).float().reshape(2, 3, 6)
    source = -torch.ones(2, 2, 6)  # [batch, layer, hidden]
    iv = MlpPatch.at(SITE, source, [0])
    want = y.clone()
    want[:, -1] = -1.0
    assert torch.equal(edit_mlp(y, 0, [iv]), want) and torch.equal(edit_mlp(y, 1, [iv]), y)
    assert mlp_layers([iv]) == [0] and head_layers([iv]) == []


@pytest.mark.parametrize("make,msg", [
    (lambda: HeadPatch(torch.zeros(2, 2, 3, 2), torch.full((2, 3), 0.5)), "other than 0 and 1"),
    (lambda: HeadPatch(torch.zeros(2, 2, 3), torch.ones(2, 3)), "source with positions='last' must be"),
    (lambda: HeadPatch(torch.zeros(2, 2, 3, 2), torch.ones(1, 4, 2, 3), "last"), "mask must be a tensor of 2 to 3"),
    (lambda: MlpPatch(torch.zeros(2, 2, 6), torch.ones(2), "every"), "unknown positions"),
    (lambda: MlpPatch(torch.zeros(2, 3, 2, 6), torch.ones(2), "last"), "must be \\[batch, layer, hidden\\]"),
])
def test_malformed_patches_are_refused(make, msg):
    with pytest.raises(WorkbenchError, match=msg):
        make()


def test_patches_that_do_not_fit_the_model_or_the_batch_are_refused():
    with pytest.raises(WorkbenchError, match="do not fit the model's 2 layers × 3 query heads"):
        validate([HeadPatch(torch.zeros(2, 2, 4, 2), torch.ones(2, 4))], SITE)
    with pytest.raises(WorkbenchError, match="head_dim 5"):
        validate([HeadPatch(torch.zeros(2, 2, 3, 5), torch.ones(2, 3))], SITE)
    with pytest.raises(WorkbenchError, match="source has 2 rows for a batch of 4"):
        validate([HeadPatch(torch.zeros(2, 2, 3, 2), torch.ones(2, 3))], SITE, batch=4)
    with pytest.raises(WorkbenchError, match="do not fit the model's 2 layers"):
        validate([MlpPatch(torch.zeros(2, 3, 6), torch.ones(3))], SITE)
    with pytest.raises(WorkbenchError, match="3 positions and this run 5"):  # all positions between unaligned prompts
        edit_heads(z_base(seq=5), 0, [HeadPatch(torch.zeros(2, 3, 2, 3, 2), torch.ones(2, 3), "all")])
