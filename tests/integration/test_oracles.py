"""Oracles on tiny random configs of every supported family (fp32, eager attention).

Random weights make a number meaningless on its own, so each check compares two independent
computations that must agree: α = 1 against the un-hooked model; α = 0 on all positions against
weight surgery on a copy; last-token scaling against a plain torch hook written here; and every
hook must actually change the output.
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
from workbench.models.sites import resolve_site

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

    h = model.get_submodule(f"{site.row.layers}.{layer}.{site.row.attn_out}").register_forward_pre_hook(pre)
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
        vlm.site.attn_out(surgery, layer).weight[:, h * d:(h + 1) * d] = 0
        expected = surgery(**inputs).logits[:, -1]
    got = make_backend(vlm, backend).last_logits(inputs, [HeadScale.at(vlm.site, [head], 0.0, positions="all")])
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
