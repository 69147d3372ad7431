"""Activation patching with image counterfactuals on the tiny LLaVA (fp32): effects against patched logits computed
here with a hand-written hook, packed = naive, identity, zero source = α = 0, all positions on aligned pairs, the
refusals (nothing stored), the store round trip and the per-relation aggregation."""

import dataclasses
import re

import pytest
import torch
from typer.testing import CliRunner

from workbench.causal.patching import overall_effects, patching_sweep, relation_effects
from workbench.cli import app
from workbench.errors import WorkbenchError
from workbench.interventions.core import HeadPatch, HeadScale, MlpScale
from workbench.interventions.torch_hooks import SiteOutputs, TorchHooksBackend, record_sites
from workbench.models.prompts import build_batch
from workbench.probes.probeset import ProbeSet
from workbench.store.effects import EffectStore
from workbench.sweeps.engine import Chunk, SweepSpec, run_chunk
from workbench.sweeps.packed import naive_patch_logits, packed_patch_logits


@pytest.fixture(scope="module")
def pairs(probes32):
    """The probes with a counterfactual partner: relation (objects swapped) and verify (opposite relation asked)."""
    return probes32.filter(lambda it: it.has_counterfactual)


@pytest.fixture(scope="module")
def two(pairs):
    """A relation probe (33 tokens) and a verify probe asking above/below (30 tokens): the batch is left-padded."""
    rel = next(it for it in pairs if it.task == "relation")
    ver = next(it for it in pairs if it.task == "verify" and ("above" in it.question or "below" in it.question))
    return pairs.filter(lambda it: it.id in (rel.id, ver.id))


# ---------------------------------------------------------------- the independent computation
def _slice_hook(vlm, layer, head, value, positions):
    """A forward-pre hook on layer ``layer``'s o_proj that overwrites head ``head``'s slice of its input with ``value``
    (``[batch, head_dim]`` at the last token, ``[batch, seq, head_dim]`` at every position)."""
    d = vlm.site.head_dim

    def pre(module, args):
        x = args[0].clone()
        if positions == "last":
            x[:, -1, head * d:(head + 1) * d] = value
        else:
            x[:, :, head * d:(head + 1) * d] = value
        return (x,)

    return vlm.site.attn_out(vlm.model, layer).register_forward_pre_hook(pre)


def _mlp_hook(vlm, layer, value):
    def post(module, args, output):
        out = output.clone()
        out[:, -1] = value
        return out

    return vlm.site.mlp(vlm.model, layer).register_forward_hook(post)


def _o_proj_input(vlm, inputs, layer):
    got = {}
    h = vlm.site.attn_out(vlm.model, layer).register_forward_pre_hook(lambda m, a: got.setdefault("x", a[0].clone()))
    m = vlm.site.mlp(vlm.model, layer).register_forward_hook(lambda mod, a, out: got.setdefault("y", out.clone()))
    try:
        with torch.no_grad():
            logits = vlm.model(**inputs).logits[:, -1].float()
    finally:
        h.remove()
        m.remove()
    return logits, got["x"], got["y"]


def _by_hand(vlm, ps, direction, sites, positions="last", kind="heads"):
    """Normalized effects ``{(layer, head): [probe]}`` computed without the library's pairing or patching code."""
    items = list(ps.items)
    clean = build_batch(vlm, ps, items)
    partner = build_batch(vlm, ps, [it.counterfactual() for it in items])
    base, source = (clean, partner) if direction == "noising" else (partner, clean)
    rows = torch.arange(len(items))
    answer = clean.option_ids[rows, clean.answer]
    foil = clean.option_ids[rows, torch.tensor([it.options.index(it.cf_answer) for it in items])]

    def ld(logits):
        return logits[rows, answer] - logits[rows, foil]

    out = {}
    for layer, head in sites:
        base_logits, _, _ = _o_proj_input(vlm, base.inputs, layer)
        source_logits, x, y = _o_proj_input(vlm, source.inputs, layer)
        d = vlm.site.head_dim
        if kind == "heads":
            value = x[:, -1, head * d:(head + 1) * d] if positions == "last" else x[:, :, head * d:(head + 1) * d]
            h = _slice_hook(vlm, layer, head, value, positions)
        else:
            h = _mlp_hook(vlm, layer, y[:, -1])
        try:
            with torch.no_grad():
                patched = vlm.model(**base.inputs).logits[:, -1].float()
        finally:
            h.remove()
        out[(layer, head)] = (ld(patched) - ld(base_logits)) / (ld(source_logits) - ld(base_logits))
    return out


# ---------------------------------------------------------------- effects = the hand computation
@pytest.mark.parametrize("direction", ["noising", "denoising"])
def test_two_probe_head_effects_equal_the_hand_patched_logits(llava_vlm, two, direction):
    assert not build_batch(llava_vlm, two, two.items).inputs["attention_mask"].all()  # left padding is exercised
    want = _by_hand(llava_vlm, two, direction, [(0, 1), (1, 3)])
    spec = SweepSpec(intervention="patch", direction=direction)
    for engine in ("naive", "packed"):
        eff = run_chunk(llava_vlm, two, spec, Chunk(0, 2, 0, 2), engine=engine)
        assert eff.shape == (2, 1, 2, 4)
        for (layer, head), w in want.items():
            assert torch.allclose(eff[:, 0, layer, head], w, rtol=1e-4, atol=1e-5), (engine, layer, head)
    assert want[(0, 1)].abs().max() > 1e-3  # not a trivially zero effect


def test_two_probe_mlp_effects_equal_the_hand_patched_logits(llava_vlm, two):
    want = _by_hand(llava_vlm, two, "noising", [(1, -1)], kind="mlp")[(1, -1)]
    spec = SweepSpec(intervention="patch", direction="noising", target="mlp")
    for engine in ("naive", "packed"):
        eff = run_chunk(llava_vlm, two, spec, Chunk(1, 2, 0, 2), engine=engine)
        assert eff.shape == (2, 1, 1)
        assert torch.allclose(eff[:, 0, 0], want, rtol=1e-4, atol=1e-5), engine


def test_all_positions_patching_on_aligned_pairs(llava_vlm, pairs):
    rel = pairs.filter(lambda it: it.task == "relation" and int(it.id) < 12)  # objects swapped: same question, same length
    want = _by_hand(llava_vlm, rel, "noising", [(0, 2)], positions="all")[(0, 2)]
    spec = SweepSpec(intervention="patch", direction="noising", positions="all")
    eff = run_chunk(llava_vlm, rel, spec, Chunk(0, 1, 0, len(rel)))
    assert torch.allclose(eff[:, 0, 0, 2], want, rtol=1e-4, atol=1e-5)
    last = run_chunk(llava_vlm, rel, SweepSpec(intervention="patch", direction="noising"), Chunk(0, 1, 0, len(rel)))
    assert (eff - last).abs().max() > 1e-3  # patching every position is not patching the last one
    with pytest.raises(WorkbenchError, match="last-token interventions only"):
        run_chunk(llava_vlm, rel, spec, Chunk(0, 1, 0, 1), engine="packed")


# ---------------------------------------------------------------- packed = naive, identity, zero source
def _base_and_source(vlm, ps):
    items = list(ps.items)
    base = build_batch(vlm, ps, items)
    source = build_batch(vlm, ps, [it.counterfactual() for it in items])
    return base, record_sites(vlm, source.inputs)


def rel_err(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


def test_packed_patch_logits_equal_naive_for_heads_and_mlps(llava_vlm, pairs):
    ps = pairs.filter(lambda it: int(it.id) < 12)
    base, source = _base_and_source(llava_vlm, ps)
    assert not base.inputs["attention_mask"].all()
    n_layers, n_heads = llava_vlm.site.shape
    heads = torch.zeros(n_layers * n_heads, n_layers, n_heads, dtype=torch.bool)
    for v in range(n_layers * n_heads):
        heads[v, v // n_heads, v % n_heads] = True
    mlps = torch.eye(n_layers, dtype=torch.bool)
    packed = packed_patch_logits(llava_vlm, base.inputs, source, head_mask=heads, chunk=3)  # chunks of 3, 3, 2
    naive = naive_patch_logits(llava_vlm, base.inputs, source, head_mask=heads)
    assert packed.shape == (len(ps), n_layers * n_heads, naive.shape[-1]) and rel_err(packed, naive) <= 1e-5
    clean = TorchHooksBackend(llava_vlm).last_logits(base.inputs).float()
    assert (naive - clean[:, None]).abs().max() > 1e-3  # the patches do change the logits
    packed = packed_patch_logits(llava_vlm, base.inputs, source, mlp_mask=mlps, chunk=1)
    assert rel_err(packed, naive_patch_logits(llava_vlm, base.inputs, source, mlp_mask=mlps)) <= 1e-5


def test_patching_with_the_base_runs_own_outputs_is_the_identity(llava_vlm, two):
    base = build_batch(llava_vlm, two, two.items)
    own = record_sites(llava_vlm, base.inputs)
    every = torch.ones(1, *llava_vlm.site.shape, dtype=torch.bool)
    naive = naive_patch_logits(llava_vlm, base.inputs, own, head_mask=every, mlp_mask=torch.ones(1, 2, dtype=torch.bool))
    assert torch.equal(naive[:, 0], own.logits)  # where(mask, z, z) is z, bit for bit
    packed = packed_patch_logits(llava_vlm, base.inputs, own, head_mask=every.expand(3, -1, -1))
    assert rel_err(packed, own.logits[:, None].expand_as(packed)) <= 1e-5
    from workbench.causal.pairs import normalized_effect

    effect = normalized_effect(naive[:, :, 0] - naive[:, :, 1], own.logits[:, 0] - own.logits[:, 1],
                               own.logits[:, 0] - own.logits[:, 1] + 1.0)
    assert torch.equal(effect, torch.zeros_like(effect))


def test_an_all_zero_source_equals_alpha_zero_ablation(llava_vlm, two):
    base = build_batch(llava_vlm, two, two.items)
    b, (n_layers, n_heads) = len(two), llava_vlm.site.shape
    site = llava_vlm.site
    zeros = SiteOutputs(logits=torch.zeros(b, 1), heads=torch.zeros(b, n_layers, n_heads, site.head_dim),
                        mlp=torch.zeros(b, n_layers, site.hidden), positions="last")
    mask = torch.zeros(1, n_layers, n_heads, dtype=torch.bool)
    mask[0, 1, 2] = True
    be = TorchHooksBackend(llava_vlm)
    patched = naive_patch_logits(llava_vlm, base.inputs, zeros, head_mask=mask)[:, 0]
    assert torch.equal(patched, be.last_logits(base.inputs, [HeadScale.at(site, [(1, 2)], alpha=0.0)]).float())
    patched = naive_patch_logits(llava_vlm, base.inputs, zeros, mlp_mask=torch.tensor([[True, False]]))[:, 0]
    assert torch.equal(patched, be.last_logits(base.inputs, [MlpScale.at(site, {0: 0.0})]).float())
    every = torch.zeros(b, base.inputs["input_ids"].shape[1], n_layers, n_heads, site.head_dim)  # all positions
    patched = be.last_logits(base.inputs, [HeadPatch.at(site, every, [(0, 3)], positions="all")]).float()
    assert torch.equal(patched, be.last_logits(base.inputs, [HeadScale.at(site, [(0, 3)], 0.0, positions="all")]).float())


# ---------------------------------------------------------------- refusals: one line, nothing stored
def _no_manifest(root):
    return not any((root / "sweeps").glob("*/manifest.json")) if (root / "sweeps").is_dir() else True


def _unaligned(pairs):
    """The relation pairs, one of whose counterfactual questions is longer than its clean one."""
    items = [it for it in pairs if it.task == "relation"][:2]
    items[1] = dataclasses.replace(items[1], cf_question=items[1].cf_question + " Look closely at the picture.")
    return ProbeSet(items, {k: pairs.image_bytes(k) for k in pairs.image_keys()}, "unaligned")


def test_sweeps_refuse_probes_without_counterfactuals_and_unaligned_pairs_before_any_manifest(llava_vlm, probes32, pairs,
                                                                                              tmp_path):
    controls = probes32.filter(lambda it: not it.has_counterfactual)
    st = EffectStore(tmp_path / "store")
    with pytest.raises(WorkbenchError, match="have no counterfactual"):
        patching_sweep(llava_vlm, controls, "noising", store=st)
    bad = _unaligned(pairs)
    with pytest.raises(WorkbenchError, match="align token by token, and the prompts have 32 and 38 tokens"):
        patching_sweep(llava_vlm, bad, "noising", positions="all", store=st)
    assert _no_manifest(tmp_path / "store")
    eff = run_chunk(llava_vlm, bad, SweepSpec(intervention="patch", direction="noising"), Chunk(0, 1, 0, 2))  # last: fine
    assert eff.shape == (2, 1, 1, 4) and not torch.isnan(eff).any()


def test_cli_refusals_are_one_line_exit_2_and_write_no_manifest(llava_folder, probes32, pairs, tmp_path):
    probes32.filter(lambda it: not it.has_counterfactual).save(tmp_path / "controls")
    pairs.save(tmp_path / "pairs")
    _unaligned(pairs).save(tmp_path / "unaligned")
    runner = CliRunner()
    store = tmp_path / "store"
    base = ["sweep", "--model", str(llava_folder), "--store", str(store), "--intervention", "patch"]
    cases = [([*base, "--direction", "sideways", "--probes", str(tmp_path / "pairs")], "unknown direction 'sideways'"),
             ([*base, "--probes", str(tmp_path / "pairs")], "patching needs a direction"),
             ([*base, "--direction", "noising", "--probes", str(tmp_path / "controls")], "have no counterfactual"),
             ([*base, "--direction", "noising", "--alpha", "0", "--probes", str(tmp_path / "pairs")], "has no α"),
             ([*base, "--direction", "noising", "--positions", "all", "--probes", str(tmp_path / "unaligned")],
              "align token by token"),
             (["sweep", "--direction", "noising", "--probes", str(tmp_path / "pairs")], "applies to patching only")]
    for args, msg in cases:
        r = runner.invoke(app, args)
        assert r.exit_code == 2 and msg in r.output, (args, r.output)
        assert len(r.output.strip().splitlines()) == 1, r.output
    assert _no_manifest(store)


def test_cli_patching_sweep_prints_the_dropped_count_and_answers_again_from_the_store(llava_folder, pairs, tmp_path):
    ps = pairs.filter(lambda it: int(it.id) < 12)
    ps.save(tmp_path / "pairs")
    runner = CliRunner()
    args = ["sweep", "--model", str(llava_folder), "--store", str(tmp_path / "store"), "--intervention", "patch",
            "--direction", "denoising", "--target", "mlp", "--probes", str(tmp_path / "pairs")]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    assert f"dropped 0 of {len(ps)} probes" in r.output and "denoising patching effect" in r.output and "L1 MLP" in r.output
    r = runner.invoke(app, [*args, "--min-gap", "1e9"])  # every probe dropped: stored as NaN, still a complete sweep
    assert r.exit_code == 0, r.output
    assert f"dropped {len(ps)} of {len(ps)} probes (|LD source − LD base| < 1e+09" in r.output
    key = re.search(r"sweep (\w{12}): 1 chunks computed", r.output).group(1)
    r = runner.invoke(app, ["store", "show", key, "--store", str(tmp_path / "store")])
    assert r.exit_code == 0 and f"dropped {len(ps)} of {len(ps)} probes" in r.output, r.output


# ---------------------------------------------------------------- the store and the aggregation
def test_store_round_trip_keys_and_dropped_probes(llava_vlm, pairs, tmp_path):
    ps = pairs.filter(lambda it: int(it.id) < 12)
    st = EffectStore(tmp_path / "store")
    kw = dict(target="mlp", store=st, layers_per_chunk=1, probes_per_chunk=3)
    first = patching_sweep(llava_vlm, ps, "noising", **kw)
    again = patching_sweep(llava_vlm, ps, "noising", **kw)
    n_chunks = 2 * -(-len(ps) // 3)  # 2 layers × probe chunks of 3
    assert (first.computed, again.computed, again.cached) == (n_chunks, 0, n_chunks) and again.key == first.key
    assert torch.equal(first.values, again.values) and first.dropped == 0
    want = run_chunk(llava_vlm, ps, first.spec, Chunk(0, 2, 0, len(ps)))
    assert torch.allclose(first.values, want, rtol=1e-4, atol=1e-4)  # other batches, other padding: fp noise / small gaps
    other = patching_sweep(llava_vlm, ps, "denoising", **kw)
    assert other.key != first.key and other.spec.to_json()["direction"] == "denoising"
    assert first.spec.to_json()["direction"] == "noising" and first.spec.to_json()["intervention"] == "patch"

    # min_gap between the 2nd and 3rd smallest |LD_source − LD_base|: exactly two probes dropped, stored as NaN
    clean = build_batch(llava_vlm, ps, list(ps.items))
    cf = build_batch(llava_vlm, ps, [it.counterfactual() for it in ps.items])
    rows = torch.arange(len(ps))
    foil = clean.option_ids[rows, torch.tensor([it.options.index(it.cf_answer) for it in ps.items])]
    answer = clean.option_ids[rows, clean.answer]
    be = TorchHooksBackend(llava_vlm)
    lc, lf = be.last_logits(clean.inputs).float(), be.last_logits(cf.inputs).float()
    gap = ((lf[rows, answer] - lf[rows, foil]) - (lc[rows, answer] - lc[rows, foil])).abs()
    low = gap.sort().values
    gapped = patching_sweep(llava_vlm, ps, "noising", min_gap=float(low[1] + low[2]) / 2, **kw)
    assert gapped.dropped == 2 and gapped.key != first.key
    dropped = torch.isnan(gapped.values).reshape(len(ps), -1).all(1)
    assert torch.equal(dropped, gap < (low[1] + low[2]) / 2)
    assert torch.equal(gapped.values[~dropped], first.values[~dropped])

    per = relation_effects(gapped, n_boot=200)
    rels = sorted({it.relation for it in ps})
    assert sorted(per) == rels
    for r in rels:
        rows_r = torch.tensor([it.relation == r for it in ps])
        used = rows_r & ~dropped
        assert (per[r].n_used, per[r].n_dropped) == (int(used.sum()), int((rows_r & dropped).sum()))
        if used.any():
            assert torch.allclose(per[r].mean, gapped.values[used, 0].mean(0), atol=1e-6)
            assert bool((per[r].low <= per[r].mean + 1e-6).all() and (per[r].mean <= per[r].high + 1e-6).all())
    whole = overall_effects(gapped, n_boot=200)
    assert (whole.n_used, whole.n_dropped) == (len(ps) - 2, 2)
    assert torch.allclose(whole.mean, gapped.values[~dropped, 0].mean(0), atol=1e-6)


def test_assemble_keeps_a_dropped_probes_nan_and_refuses_a_missing_chunk(llava_vlm):
    from workbench.sweeps.engine import assemble

    spec = SweepSpec(intervention="patch", direction="noising", target="mlp")
    chunks = [Chunk(0, 1, 0, 2), Chunk(1, 2, 0, 2)]
    values = [torch.tensor([[[0.5]], [[float("nan")]]]), torch.tensor([[[0.25]], [[float("nan")]]])]  # probe 1 dropped
    full = assemble(llava_vlm, spec, 2, list(zip(chunks, values)))
    assert torch.equal(full[0], torch.tensor([[0.5, 0.25]])) and torch.isnan(full[1]).all()
    with pytest.raises(WorkbenchError, match="missing chunks"):
        assemble(llava_vlm, spec, 2, [(chunks[0], values[0])])


@pytest.mark.parametrize("backend", ["nnsight", "transformer_lens"])
def test_every_backend_patches_alike_and_refuses_edges_it_cannot_edit(llava_vlm, two, backend):
    """A HeadPatch / MlpPatch goes through the same pure edit in every backend: nnsight and TransformerLens give the
    torch hooks' logits; an attention-edge intervention, which lives in the attention function only the torch backend
    edits, is refused by the others instead of silently ignored."""
    from workbench.interventions.attention import EdgeScale
    from workbench.interventions.backends import make_backend
    from workbench.interventions.core import MlpPatch
    from workbench.models.load import load_vlm

    vlm = llava_vlm if backend == "nnsight" else load_vlm(llava_vlm.source)
    base, source = _base_and_source(vlm, two)
    mask = torch.zeros(vlm.site.shape, dtype=torch.bool)
    mask[1, 2] = mask[0, 1] = True
    ivs = [HeadPatch(source.heads, mask), MlpPatch(source.mlp, torch.tensor([False, True]))]
    want = TorchHooksBackend(vlm).last_logits(base.inputs, ivs).float()
    assert (want - TorchHooksBackend(vlm).last_logits(base.inputs).float()).abs().max() > 1e-3
    got = make_backend(vlm, backend).last_logits(base.inputs, ivs).float()
    assert rel_err(got, want) <= 1e-4
    with pytest.raises(WorkbenchError, match="run on the torch backend"):
        make_backend(vlm, backend).last_logits(base.inputs, [EdgeScale(torch.zeros(vlm.site.shape), None)])
