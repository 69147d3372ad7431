"""The packed last-token fast path equals the naive path (one forward per variant), 1e-5 relative in fp32."""

import pytest
import torch

from tests.tiny import FAMILIES, tiny_inputs, tiny_model
from workbench.errors import WorkbenchError
from workbench.models.load import wrap_vlm
from workbench.models.prompts import build_batch
from workbench.models.sites import SITES
from workbench.sweeps.packed import naive_variant_logits, packed_variant_logits

PACKABLE = [f for f in FAMILIES if any(f in r.model_types and r.packable for r in SITES)]
NOT_PACKABLE = [f for f in FAMILIES if f not in PACKABLE]


def one_head_variants(site, alpha=0.0):
    layers, heads = site.shape
    a = torch.ones(layers * heads, layers, heads)
    for v in range(layers * heads):
        a[v, v // heads, v % heads] = alpha
    return a


def rel_err(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


@pytest.mark.parametrize("family", PACKABLE)
def test_packed_equals_naive_on_every_packable_family(family):
    vlm = wrap_vlm(tiny_model(family))
    inputs = tiny_inputs(family)
    heads = one_head_variants(vlm.site)
    packed = packed_variant_logits(vlm, inputs, heads, chunk=3)  # 8 variants in chunks of 3: the cache is cropped between
    naive = naive_variant_logits(vlm, inputs, heads)
    assert rel_err(packed, naive) <= 1e-5
    clean = vlm.model(**inputs).logits[:, -1]
    assert (naive - clean[:, None]).abs().amax(dim=(0, 2)).min() > 1e-4, "every variant changes something"


def test_packed_equals_naive_on_a_left_padded_batch_with_mlp_variants(llava_vlm, probes32):
    batch = build_batch(llava_vlm, probes32, list(probes32.items[:5]))
    assert not batch.inputs["attention_mask"].all()
    heads = torch.cat([one_head_variants(llava_vlm.site, 0.0), one_head_variants(llava_vlm.site, 2.0)])
    mlps = torch.ones(len(heads), llava_vlm.site.n_layers)
    mlps[::3, 1] = 0.5
    packed = packed_variant_logits(llava_vlm, batch.inputs, heads, mlps, chunk=7)
    naive = naive_variant_logits(llava_vlm, batch.inputs, heads, mlps)
    assert packed.shape == naive.shape == (5, 16, llava_vlm.model.config.text_config.vocab_size)
    assert rel_err(packed, naive) <= 1e-5


@pytest.mark.parametrize("family", NOT_PACKABLE)
def test_families_the_packed_mask_cannot_express_are_refused(family):
    vlm = wrap_vlm(tiny_model(family))
    with pytest.raises(WorkbenchError, match="use the naive path"):
        packed_variant_logits(vlm, tiny_inputs(family), one_head_variants(vlm.site))
