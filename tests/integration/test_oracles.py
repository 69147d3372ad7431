"""Oracles on tiny random configs of every supported family (fp32, eager attention).

Random weights make a number meaningless on its own, so each check compares two independent
computations that must agree: α = 1 against the un-hooked model; α = 0 on all positions against
weight surgery on a copy; last-token scaling against a plain torch hook written here; and every
hook must actually change the output.

Mllama's layer 1 is a cross-attention layer (heads at ``cross_attn.o_proj``): every oracle above runs
on it too, because the parametrized heads include layer 1. TransformerLens 4.3 is compared with
nnsight on every tiny family it has an adapter for, and its one-line refusal is asserted for the rest
(no adapter: Qwen2-VL, PaliGemma, InternVL, Mllama, SmolVLM; adapter needs torchvision: Qwen2.5-VL, Qwen3-VL).
"""

import copy

import pytest
import torch

from tests.tiny import FAMILIES, tiny_inputs, tiny_model
from workbench.errors import WorkbenchError
from workbench.interventions.backends import make_backend
from workbench.interventions.core import HeadScale, MeanAblation, MlpScale
from workbench.interventions.nnsight_backend import head_means
from workbench.models.load import wrap_vlm
from workbench.models.sites import resolve_site, site_row

BACKENDS = ("nnsight", "torch")


@pytest.fixture(scope="module", params=FAMILIES)
def case(request):
    family = request.param
    model = tiny_model(family)
    vlm = wrap_vlm(model)
    inputs = tiny_inputs(family)
    with torch.no_grad():
        clean = model(**inputs).logits[:, -1]
    return family, vlm, inputs, clean


def o_proj_of(model, site, layer):
    """The layer's attention output projection, found by name in the module tree (not through the sites table's kinds):
    the one ``*.o_proj`` Linear directly under an attention module of the layer (``self_attn`` or Mllama's ``cross_attn``)."""
    found = [m for name, m in model.get_submodule(f"{site.row.layers}.{layer}").named_modules() if name.count(".") == 1
             and name.endswith(".o_proj")]
    assert len(found) == 1, f"layer {layer} has {len(found)} o_proj"
    return found[0]


def reference_scale(model, site, layer, head, alpha, inputs, last_only=True):
    """The oracle: a plain forward_pre_hook on o_proj, written independently of workbench code."""
    d = site.head_dim

    def pre(module, args):
        x = args[0].clone()
        if last_only:
            x[:, -1, head * d:(head + 1) * d] *= alpha
        else:
            x[..., head * d:(head + 1) * d] *= alpha
        return (x,)

    h = o_proj_of(model, site, layer).register_forward_pre_hook(pre)
    try:
        with torch.no_grad():
            return model(**inputs).logits[:, -1]
    finally:
        h.remove()


@pytest.mark.parametrize("backend", BACKENDS)
def test_identity_reproduces_clean_logits(case, backend):
    _, vlm, inputs, clean = case
    be = make_backend(vlm, backend)
    for positions in ("last", "all"):
        ivs = [HeadScale.identity(vlm.site, positions), MlpScale(torch.ones(vlm.site.n_layers), positions)]
        assert (be.last_logits(inputs, ivs) - clean).abs().max().item() <= 1e-6


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("head", [(0, 0), (1, 3)])
def test_zero_ablation_equals_weight_surgery(case, backend, head):
    _, vlm, inputs, clean = case
    layer, h = head
    surgery = copy.deepcopy(vlm.model)
    d = vlm.site.head_dim
    with torch.no_grad():
        o_proj_of(surgery, vlm.site, layer).weight[:, h * d:(h + 1) * d] = 0
        expected = surgery(**inputs).logits[:, -1]
    got = make_backend(vlm, backend).last_logits(inputs, [HeadScale.at(vlm.site, [head], 0.0, positions="all")])
    assert (got - expected).abs().max().item() <= 1e-5
    assert (got - clean).abs().max().item() > 1e-4, "the ablation must change something"


@pytest.mark.parametrize("backend", BACKENDS)
def test_zero_ablation_equals_weight_surgery_on_a_left_padded_batch(case, backend):
    """The same oracle with row 0 left-padded by 3 (its positions, masks and, in Mllama, cross-attention mask shift)."""
    family, vlm, _, _ = case
    inputs = tiny_inputs(family, pad_left=3)
    assert not inputs["attention_mask"].all()
    surgery = copy.deepcopy(vlm.model)
    d = vlm.site.head_dim
    with torch.no_grad():
        clean = vlm.model(**inputs).logits[:, -1]
        o_proj_of(surgery, vlm.site, 1).weight[:, 2 * d:3 * d] = 0
        expected = surgery(**inputs).logits[:, -1]
    got = make_backend(vlm, backend).last_logits(inputs, [HeadScale.at(vlm.site, [(1, 2)], 0.0, positions="all")])
    assert (got - expected).abs().max().item() <= 1e-5
    assert (got - clean).abs().max().item() > 1e-4, "the ablation must change something"


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("alpha", [0.0, 0.5, 2.0])
def test_last_token_scaling_equals_plain_hook(case, backend, alpha):
    _, vlm, inputs, clean = case
    expected = reference_scale(vlm.model, vlm.site, 1, 2, alpha, inputs)
    got = make_backend(vlm, backend).last_logits(inputs, [HeadScale.at(vlm.site, {(1, 2): alpha})])
    assert (got - expected).abs().max().item() <= 1e-6
    assert (expected - clean).abs().max().item() > 1e-4


def test_every_hook_fires(case):
    """Each layer's head hook and MLP hook, at both position settings, must move the logits."""
    _, vlm, inputs, clean = case
    be = make_backend(vlm, "nnsight")
    for layer in range(vlm.site.n_layers):
        for positions in ("last", "all"):
            head = HeadScale.at(vlm.site, {(layer, layer % vlm.site.n_heads): 3.0}, positions=positions)
            assert (be.last_logits(inputs, [head]) - clean).abs().max().item() > 1e-4, (layer, positions, "head")
            mlp = MlpScale.at(vlm.site, {layer: 0.0}, positions=positions)
            assert (be.last_logits(inputs, [mlp]) - clean).abs().max().item() > 1e-4, (layer, positions, "mlp")


def layer_outputs(vlm, inputs, layer, ivs):
    """The residual stream right after decoder layer ``layer`` ``[batch, seq, hidden]``, with the interventions applied."""
    got = []

    def grab(module, args, output):
        got.append((output[0] if isinstance(output, tuple) else output).detach().clone())

    h = vlm.model.get_submodule(f"{vlm.site.row.layers}.{layer}").register_forward_hook(grab)
    try:
        make_backend(vlm, "torch").last_logits(inputs, ivs)
    finally:
        h.remove()
    return got[0]


def test_mlp_site_is_the_mlps_contribution_to_the_residual_stream(case):
    """The MLP site's output is what the layer adds to the residual: so the layer's output is affine in the MLP scale α.

    A site before a norm (Gemma 3's ``mlp``, followed by ``post_feedforward_layernorm``) fails this: RMSNorm(α·y) ≈ RMSNorm(y).
    """
    _, vlm, inputs, _ = case
    for layer in range(vlm.site.n_layers):
        out = {a: layer_outputs(vlm, inputs, layer, [MlpScale.at(vlm.site, {layer: a}, positions="all")])
               for a in (0.0, 0.5, 1.0)}
        assert (out[0.0] - out[1.0]).abs().max() > 1e-3, "the MLP must contribute"
        assert (out[0.5] - (out[0.0] + out[1.0]) / 2).abs().max() <= 1e-5 * out[1.0].abs().max(), layer


@pytest.mark.parametrize("family", [f for f in FAMILIES if site_row(f).attn_post_norm])
def test_heads_behind_a_post_attention_norm_are_removed_exactly_but_not_scaled_affinely(family):
    """Gemma 3: ``post_attention_layernorm`` follows ``o_proj``. What the attention adds to the residual is that norm's output:
    α = 0 on a head equals the norm of the o_proj output without it, but α = 0.5 is not the midpoint of α = 0 and 1."""
    vlm = wrap_vlm(tiny_model(family))
    inputs = tiny_inputs(family)
    norm = vlm.model.get_submodule(f"{vlm.site.row.layers}.1.{vlm.site.row.attn_post_norm}")
    got = []
    h = norm.register_forward_hook(lambda module, args, output: got.append((args[0].clone(), output.clone())))
    try:
        for a in (0.0, 0.5, 1.0):
            make_backend(vlm, "torch").last_logits(inputs, [HeadScale.at(vlm.site, {(1, 2): a}, positions="all")])
    finally:
        h.remove()
    (x0, y0), (x5, y5), (x1, y1) = got
    assert (x5 - (x0 + x1) / 2).abs().max() <= 1e-5 * x1.abs().max(), "the o_proj output itself is affine in α"
    assert (y5 - (y0 + y1) / 2).abs().max() > 1e-3 * y1.abs().max(), "behind the norm it is not: as documented in sites.py"


def test_mean_ablation_equals_reference(case):
    _, vlm, inputs, clean = case
    means = head_means(vlm, inputs)
    assert means.shape == (vlm.site.n_layers, vlm.site.n_heads, vlm.site.head_dim)
    d = vlm.site.head_dim

    def pre(module, args):
        x = args[0].clone()
        x[:, -1, 1 * d:2 * d] = means[0, 1]
        return (x,)

    h = vlm.site.attn_out(vlm.model, 0).register_forward_pre_hook(pre)
    with torch.no_grad():
        expected = vlm.model(**inputs).logits[:, -1]
    h.remove()
    got = make_backend(vlm, "nnsight").last_logits(inputs, [MeanAblation(((0, 1),), means)])
    assert (got - expected).abs().max().item() <= 1e-6
    zero = make_backend(vlm, "nnsight").last_logits(inputs, [MeanAblation(((0, 1),), torch.zeros_like(means))])
    assert (zero - make_backend(vlm, "nnsight").last_logits(inputs, [HeadScale.at(vlm.site, [(0, 1)])])).abs().max() <= 1e-6


@pytest.mark.parametrize("backend", BACKENDS)
def test_model_is_restored_after_an_exception(case, backend):
    _, vlm, inputs, clean = case
    weights = {k: v.clone() for k, v in vlm.model.state_dict().items()}
    bad = HeadScale(torch.full(vlm.site.shape, float("nan")))
    be = make_backend(vlm, backend)

    class Boom(Exception):
        pass

    def explode(*a, **k):
        raise Boom

    h = vlm.site.mlp(vlm.model, vlm.site.n_layers - 1).register_forward_hook(explode)
    try:
        with pytest.raises(Boom):
            be.last_logits(inputs, [bad])
    finally:
        h.remove()
    for layer in range(vlm.site.n_layers):
        assert not vlm.site.attn_out(vlm.model, layer)._forward_pre_hooks
        assert not vlm.site.mlp(vlm.model, layer)._forward_hooks
    assert all(torch.equal(v, weights[k]) for k, v in vlm.model.state_dict().items())
    assert (be.last_logits(inputs) - clean).abs().max().item() <= 1e-6


def test_unsupported_architecture_lists_the_supported_ones():
    from transformers import GPT2Config, GPT2LMHeadModel

    model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_head=2, n_embd=8, vocab_size=16))
    with pytest.raises(WorkbenchError, match=r"unsupported architecture 'gpt2'; supported: LLaVA-1.5 \(llava\).*add a SiteRow"):
        wrap_vlm(model)


def test_a_row_that_does_not_match_the_model_is_refused():
    model = copy.deepcopy(tiny_model("llava"))
    model.model.language_model.layers[1].self_attn.o_proj = torch.nn.Linear(8, 64)
    with pytest.raises(WorkbenchError, match="layers.1.self_attn.o_proj should be a Linear with 4×16 inputs"):
        resolve_site(model)


def test_transformer_lens_backend_needs_a_folder():
    with pytest.raises(WorkbenchError, match="boots from the model folder"):
        make_backend(wrap_vlm(tiny_model("llava")), "transformer_lens")
    with pytest.raises(WorkbenchError, match="unknown backend 'jax'"):
        make_backend(wrap_vlm(tiny_model("llava")), "jax")


def test_gradients_reach_alpha_identically_through_both_backends():
    """ScAle trains alpha through the backend: the gradient must flow, and agree across backends."""
    vlm = wrap_vlm(tiny_model("llava"))
    inputs = tiny_inputs("llava")
    grads = []
    for backend in BACKENDS:
        alpha = torch.ones(vlm.site.shape, requires_grad=True)
        mlp = torch.ones(vlm.site.n_layers, requires_grad=True)
        logits = make_backend(vlm, backend).last_logits(inputs, [HeadScale(alpha), MlpScale(mlp)], grad=True)
        torch.nn.functional.cross_entropy(logits, torch.tensor([5, 7])).backward()
        grads.append(torch.cat([alpha.grad.flatten(), mlp.grad]))
    assert grads[0].abs().min() > 0, "every scale gets a gradient"
    assert torch.allclose(grads[0], grads[1], rtol=1e-5, atol=1e-7)
    assert all(p.grad is None for p in vlm.model.parameters()), "the model stays frozen"


# --- families whose layers differ: Mllama's cross-attention layers -------------------------------------------------------


def test_mllama_cross_attention_layers_are_heads_at_their_own_layer_index():
    """Layer 1 of the tiny Mllama is a cross-attention layer: its heads sit at cross_attn.o_proj, in the same
    [layer, head] grid."""
    site = wrap_vlm(tiny_model("mllama")).site
    assert site.shape == (2, 4) and site.kinds == ("self-attention", "cross-attention")
    assert site.attn_out_path(0) == "model.language_model.layers.0.self_attn.o_proj"
    assert site.attn_out_path(1) == "model.language_model.layers.1.cross_attn.o_proj"
    assert site.layers_of_kind("cross-attention") == [1]
    assert type(site.attn_out(tiny_model("mllama"), 1)).__module__.startswith("torch.nn")
    assert type(tiny_model("mllama").model.language_model.layers[1]).__name__ == "MllamaCrossAttentionDecoderLayer"
    assert wrap_vlm(tiny_model("llava")).site.kinds == ("self-attention", "self-attention")


def test_mllama_rows_are_checked_per_layer_kind():
    model = copy.deepcopy(tiny_model("mllama"))
    model.config.text_config.cross_attention_layers = [5]
    with pytest.raises(WorkbenchError, match="cross_attention_layers lists layer 5, outside the 2 layers"):
        resolve_site(model)
    model.config.text_config.cross_attention_layers = []  # the config no longer says layer 1 is cross-attention
    with pytest.raises(WorkbenchError, match=r"layer 1 \(self-attention\) lacks 'self_attn.o_proj'"):
        resolve_site(model)
    model.config.text_config.cross_attention_layers = None
    with pytest.raises(WorkbenchError,
                       match="the text config has no 'cross_attention_layers' listing its cross-attention layers"):
        resolve_site(model)
    model.config.text_config.cross_attention_layers = [1]
    model.model.language_model.layers[1].cross_attn.o_proj = torch.nn.Linear(8, 64)
    with pytest.raises(WorkbenchError, match="layers.1.cross_attn.o_proj should be a Linear with 4×16 inputs"):
        resolve_site(model)


@pytest.mark.parametrize("backend", BACKENDS)
def test_mllama_cross_attention_heads_are_never_silently_skipped(backend):
    """Without an image, Mllama skips its cross-attention layers: editing them then is refused, not a silent no-op."""
    vlm = wrap_vlm(tiny_model("mllama"))
    text_only = {k: v for k, v in tiny_inputs("mllama").items() if k in ("input_ids", "attention_mask")}
    be = make_backend(vlm, backend)
    for ivs in ([HeadScale.at(vlm.site, {(1, 0): 0.0})], [MlpScale.at(vlm.site, {0: 0.5})],
                [MeanAblation(((1, 2),), torch.zeros(2, 4, 16))]):
        with pytest.raises(WorkbenchError, match=r"cross-attention layers \[1\] do not run on a batch without pixel_values"):
            be.last_logits(text_only, ivs)
    with torch.no_grad():
        clean = vlm.model(**text_only).logits[:, -1]
    # an edit confined to the self-attention layer runs, and is exact
    got = be.last_logits(text_only, [MeanAblation(((0, 2),), torch.zeros(2, 4, 16))])
    expected = reference_scale(vlm.model, vlm.site, 0, 2, 0.0, text_only)
    assert (got - expected).abs().max().item() <= 1e-6 and (got - clean).abs().max().item() > 1e-4


def test_families_transformers_lacks_are_named():
    from workbench.models.sites import site_row

    with pytest.raises(WorkbenchError, match=r"original InternVL checkpoints \(InternVLChatModel, remote code\) have no "
                                             r"transformers 5.24 class.*InternVL3-1B-hf"):
        site_row("internvl_chat")
    with pytest.raises(WorkbenchError, match=r"original LLaVA-OneVision checkpoints .* no transformers 5.24 class"):
        site_row("llava_qwen")


def test_every_family_is_listed_by_the_cli(monkeypatch):
    from typer.testing import CliRunner

    from workbench.cli import app
    from workbench.models.sites import SITES

    monkeypatch.setenv("COLUMNS", "400")
    r = CliRunner().invoke(app, ["model", "families"])
    assert r.exit_code == 0, r.output
    for row in SITES:
        assert row.family in r.output and ", ".join(row.model_types) in r.output, row.family
    assert all(f in r.output for f in ("Qwen3-VL", "LLaVA-OneVision", "InternVL", "Mllama (Llama 3.2 Vision)"))


# --- TransformerLens: agreement where it has an adapter, a one-line refusal where not --------------------------------------

def _torchvision() -> bool:
    import importlib.util

    return importlib.util.find_spec("torchvision") is not None


#: TransformerLens 4.3: families with an adapter that boots here; the rest, with the reason it refuses.
TL_AGREES = (("llava", "llava_next", "idefics3", "gemma3", "llava_onevision")
             + (("qwen2_5_vl", "qwen3_vl") if _torchvision() else ()))
TL_REFUSES = {"qwen2_vl": "has no adapter for Qwen2VLForConditionalGeneration",
              "paligemma": "has no adapter for PaliGemmaForConditionalGeneration",
              "internvl": "has no adapter for InternVLForConditionalGeneration",
              "mllama": "has no adapter for MllamaForConditionalGeneration",
              "smolvlm": "has no adapter for SmolVLMForConditionalGeneration",
              **({} if _torchvision() else {"qwen2_5_vl": "Qwen2_5_VLArchitectureAdapter needs the optional torchvision",
                                             "qwen3_vl": "Qwen3VLArchitectureAdapter needs the optional torchvision"})}


def test_the_transformer_lens_table_covers_every_tiny_family():
    assert sorted(TL_AGREES + tuple(TL_REFUSES)) == sorted(FAMILIES)


@pytest.fixture(scope="module")
def tl_folders(tmp_path_factory):
    """Each tiny family saved as a folder (weights + config + a word tokenizer): what the TransformerLens bridge boots from."""
    from workbench.models.scaffold import word_tokenizer

    def save(family):
        folder = tmp_path_factory.mktemp("tl") / family
        if not folder.exists():
            tiny_model(family).save_pretrained(folder)
            word_tokenizer().save_pretrained(folder)
        return folder

    return save


@pytest.mark.parametrize("family", TL_AGREES)
def test_transformer_lens_agrees_with_nnsight_on_per_head_effects(family, tl_folders):
    """Per-head α = 0 effects (Δ last-token logits, every head) on a left-padded batch, within 1e-4 relative of nnsight."""
    from workbench.interventions.tl_backend import TransformerLensBackend

    vlm = wrap_vlm(tiny_model(family))
    inputs = tiny_inputs(family, pad_left=2)
    nn, tl = make_backend(vlm, "nnsight"), TransformerLensBackend(tl_folders(family), vlm.site)

    def effects(be):
        base = be.last_logits(inputs)
        return torch.stack([torch.stack([be.last_logits(inputs, [HeadScale.at(vlm.site, [(layer, head)])]) - base
                                         for head in range(vlm.site.n_heads)]) for layer in range(vlm.site.n_layers)])

    a, b = effects(nn), effects(tl)
    assert b.abs().amax(dim=(2, 3)).min() > 1e-3, "every head's effect must be non-trivial for the comparison to mean anything"
    assert (a - b).abs().max().item() <= 1e-4 * b.abs().max().item()
    mixed = [HeadScale.at(vlm.site, {(0, 1): 2.0}, positions="all"), MlpScale.at(vlm.site, {1: 0.5})]
    x, y = nn.last_logits(inputs, mixed), tl.last_logits(inputs, mixed)
    assert (x - y).abs().max().item() <= 1e-4 * y.abs().max().item()


@pytest.mark.parametrize("family", sorted(TL_REFUSES))
def test_transformer_lens_refuses_families_it_cannot_bridge_in_one_line(family, tl_folders):
    from workbench.interventions.tl_backend import TransformerLensBackend

    with pytest.raises(WorkbenchError, match=TL_REFUSES[family]) as e:
        TransformerLensBackend(tl_folders(family), wrap_vlm(tiny_model(family)).site)
    assert "\n" not in str(e.value) and "the nnsight backend for this" in str(e.value)
