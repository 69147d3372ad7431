"""Benchmark: naive vs packed last-token head sweeps, with the floor, in one run.

For each model: a batch of probes, α ∈ {0, 0.5, 2} on every head (the issue's example sweep:
3 variants per head), last token.

    naive  one full forward per variant (the reference)
    fast   the packed path: one prefix pass with a KV cache + all variants as packed queries
    floor  what the fast path cannot go below: the prefix pass + the batched decode of the
           packed queries (in the same chunks as the fast path) with no hooks

On the GPU the naive loop at 7B shape takes ~0.3 s a variant (15 minutes for the 3,072 variants),
so by default it is timed on ``--gpu-naive-variants`` variants spread over the sweep and scaled
to all of them; the table marks such a time ``(est. from N)``. ``--gpu-naive-variants 0`` times
every variant. A naive forward does the same work whichever head it scales, so the per-variant
time is flat and the scaling is linear.

Fast and floor are each the median of 3 timed runs after a warm-up at the timed shapes (the first
run at a new shape pays for allocator blocks and kernel selection; naive's forwards are all alike).

Rows: the organism on CPU (a random-weight model of the organism's shape when
assets/models/organism is absent — the timing depends on shapes, not weights); a small
Qwen2.5-VL-shaped random model on CPU (M-RoPE, grouped-query attention 14 : 2 as the 7B's 28 : 4,
a 224×224 image → 64 image tokens; the packed path gives the copies the last token's 3-D rope ids);
and, when a GPU is present, two random-weight 7B-shaped models in bf16: LLaVA-1.5-7B (32 layers × 32 heads,
576 image tokens) and Qwen2.5-VL-7B (28 layers × 28 query heads on 4 KV heads, hidden 3584, M-RoPE sections
[16, 24, 24], the full 32-block vision tower; a 448×448 image → 32×32 patches of 14 px merged 2×2 → 256 image
tokens). ``--gpu auto`` (the default) runs the GPU rows exactly when CUDA is available, ``--gpu on`` insists on
them (and stops at once without CUDA), ``--gpu off`` skips them.

Patching rows (:func:`bench_patch`, the same models, in the same run): last-token activation patching of every head
(one variant a head: its output at the last token replaced by a source run's, ``record_sites`` on a second seeded
batch of the same shapes), ``packed_patch_logits`` vs ``naive_patch_logits`` and the floor at the same number of
copies, with max |packed − naive| over the logits. On the CPU the ratio is bounded by the token count as the head
sweep's is: naive runs V·T tokens, packed T + V, so the ceiling is T·V/(T + V) — about 20× for the organism's
V = 48 heads and T ≈ 31 tokens, whatever the implementation. The GPU patching rows (LLaVA-1.5-7B and Qwen2.5-VL-7B
shapes: 1,024 and 784 heads) run exactly when the GPU head rows do; the naive loop is timed on
``--gpu-naive-variants`` variants and scaled.

Peak memory beside each time: on the GPU ``torch.cuda.max_memory_allocated`` above what was allocated at the start,
on the CPU the resident set size sampled every 5 ms above the start (:class:`bench_peers.PeakMemory`; tracemalloc
does not see torch's allocations).

Peers (:mod:`bench_peers`, organism on the CPU, ``--peers on`` by default): the workbench's head sweep and patching
sweep (``run_chunk``, packed and naive) against the loops a user of TransformerLens 4 (``TransformerBridge``,
``run_with_hooks`` on ``hook_z``, one forward per variant with the image inputs passed) and of nnsight (one
``model.trace`` per variant) would write, on 16 real probes of the organism's evaluation set, each checked to compute
the same numbers (max |peer − workbench packed|). The load averages at the start and the end are printed: other
processes share this machine's cores, and the ratios are only as good as the quiet.

    .venv/bin/python analyses/bench_sweep.py [--probes 16] [--gpu-probes 16] [--gpu-naive-variants 96] [--gpu auto|on|off]
                                             [--peers on|off] [--peer-variants 0]
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import time
from importlib.metadata import version

import torch
from bench_peers import PeakMemory
from rich.console import Console
from rich.table import Table
from transformers import DynamicCache

from workbench.interventions.torch_hooks import hooked, record_sites
from workbench.models.load import VLM, wrap_vlm
from workbench.models.scaffold import llava_config, word_tokenizer
from workbench.organism import DEFAULT_MODEL
from workbench.sweeps.packed import (
    PER_TOKEN,
    full_positions,
    naive_patch_logits,
    naive_variant_logits,
    packed_mask,
    packed_patch_logits,
    packed_variant_logits,
)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _time(fn, device) -> float:
    _sync(device)
    t = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - t


def _timed(fn, device, repeats: int = 1) -> tuple[float, float]:
    """``(median seconds over repeats, peak memory above the start in MiB)`` (:class:`bench_peers.PeakMemory`: CUDA's
    allocator peak on a GPU, the sampled resident set size on the CPU)."""
    with PeakMemory(device) as mem:
        seconds = statistics.median(_time(fn, device) for _ in range(repeats))
    return seconds, mem.mib


def _inputs(vlm: VLM, n: int, text_len: int = 14, seed: int = 0) -> dict[str, torch.Tensor]:
    """LLaVA layout: BOS, the image tokens, ``text_len`` random text tokens; random pixels (seeded: ``seed`` 1 gives
    the patching rows' source batch, the same shapes with other tokens and pixels)."""
    cfg = vlm.model.config
    g = torch.Generator().manual_seed(seed)
    n_img = (cfg.vision_config.image_size // cfg.vision_config.patch_size) ** 2
    ids = torch.cat([torch.full((n, 1), 2), torch.full((n, n_img), cfg.image_token_id),
                     torch.randint(10, min(cfg.text_config.vocab_size, 60), (n, text_len), generator=g)], dim=1)
    pv = torch.randn(n, 3, cfg.vision_config.image_size, cfg.vision_config.image_size, generator=g)
    return {"input_ids": ids.to(vlm.device), "attention_mask": torch.ones_like(ids).to(vlm.device),
            "pixel_values": pv.to(vlm.device, vlm.dtype)}


def _qwen_inputs(vlm: VLM, n: int, text_len: int = 14, image: int = 224, seed: int = 0) -> dict[str, torch.Tensor]:
    """Qwen2.5-VL layout: ``pixel_values [n · patches, 3 · 2 · 14 · 14]`` (flattened temporal patches), ``image_grid_thw``,
    ``(image / 14 / 2)²`` image tokens per row (2×2 merged), and ``mm_token_type_ids`` (1 on them)."""
    cfg = vlm.model.config
    g = torch.Generator().manual_seed(seed)
    v = cfg.vision_config
    grid = image // v.patch_size
    n_img = (grid // v.spatial_merge_size) ** 2
    ids = torch.cat([torch.full((n, 1), 2), torch.full((n, n_img), cfg.image_token_id),
                     torch.randint(10, 60, (n, text_len), generator=g)], dim=1)
    pv = torch.randn(n * grid * grid, 3 * v.temporal_patch_size * v.patch_size ** 2, generator=g)
    return {"input_ids": ids.to(vlm.device), "attention_mask": torch.ones_like(ids).to(vlm.device),
            "pixel_values": pv.to(vlm.device, vlm.dtype),
            "image_grid_thw": torch.tensor([[1, grid, grid]] * n, device=vlm.device),
            "mm_token_type_ids": (ids == cfg.image_token_id).long().to(vlm.device)}


def _floor(vlm: VLM, inputs: dict, n_var: int, chunk: int) -> None:
    """Prefill once, then decode the packed queries chunk by chunk, without hooks (the packed path's own
    position ids and per-token cropping, so M-RoPE rows pay for the same work)."""
    ids = inputs["input_ids"]
    b, t = ids.shape
    positions = full_positions(vlm, inputs)
    cache = DynamicCache()
    vlm.model(**{k: (x[:, :-1] if k in PER_TOKEN else x) for k, x in inputs.items()}, position_ids=positions[..., :-1],
              cache=cache, use_cache=True, logits_to_keep=1)
    last = positions[..., -1:]
    for start in range(0, n_var, chunk):
        c = min(chunk, n_var - start)
        mask = packed_mask(inputs["attention_mask"][:, :-1], c, vlm.dtype)
        vlm.model(input_ids=ids[:, -1:].expand(b, c), attention_mask=mask, position_ids=last.expand(*last.shape[:-1], c),
                  cache=cache, use_cache=True)
        cache.crop(-c)


def bench(vlm: VLM, label: str, n_probes: int, chunk: int, naive_sample: int = 0, repeats: int = 3, make_inputs=_inputs) -> dict:
    device = vlm.device
    inputs = make_inputs(vlm, n_probes)
    layers, heads = vlm.site.shape
    alphas = (0.0, 0.5, 2.0)
    variants = torch.ones(len(alphas) * layers * heads, layers, heads)
    for v in range(len(variants)):
        site = v % (layers * heads)
        variants[v, site // heads, site % heads] = alphas[v // (layers * heads)]
    with torch.no_grad():
        # warm-up at the timed shapes (a full chunk: allocator blocks, kernel choices), then the median of `repeats`
        packed_variant_logits(vlm, inputs, variants[:chunk], chunk=chunk)
        _floor(vlm, inputs, min(chunk, len(variants)), chunk)
        fast, fast_mib = _timed(lambda: packed_variant_logits(vlm, inputs, variants, chunk=chunk), device, repeats)
        with hooked(vlm.model, vlm.site, []):
            floor = statistics.median(_time(lambda: _floor(vlm, inputs, len(variants), chunk), device) for _ in range(repeats))
        timed = variants
        if 0 < naive_sample < len(variants):  # evenly spread over α and layers
            timed = variants[torch.linspace(0, len(variants) - 1, naive_sample).round().long()]
        naive, naive_mib = _timed(lambda: naive_variant_logits(vlm, inputs, timed), device)
        naive *= len(variants) / len(timed)
    return {"model": label, "device": str(device), "probes": n_probes, "variants": len(variants), "naive": naive, "fast": fast,
            "floor": floor, "naive_timed": len(timed), "fast_mib": fast_mib, "naive_mib": naive_mib}


def bench_patch(vlm: VLM, label: str, n_probes: int, chunk: int, naive_sample: int = 0, repeats: int = 3,
                make_inputs=_inputs) -> dict:
    """Last-token patching of every head (one variant per head: its output at the last token replaced by the source
    run's), packed (:func:`packed_patch_logits`) vs naive (:func:`naive_patch_logits`), with the floor as in
    :func:`bench` at the same number of packed copies. The source's site outputs are recorded once
    (:func:`record_sites`, timed apart as ``source``: both paths need it). ``max_diff`` is max |packed − naive| over
    the logits of the variants the naive loop ran, and ``max_rel`` that over the largest |logit| (fp32: summation order
    only; bf16 on the GPU: bf16 rounding)."""
    device = vlm.device
    base, source_inputs = make_inputs(vlm, n_probes), make_inputs(vlm, n_probes, seed=1)
    layers, heads = vlm.site.shape
    masks = torch.eye(layers * heads, dtype=torch.bool).reshape(-1, layers, heads)  # [variant = layer·head, layer, head]
    with torch.no_grad():
        record_sites(vlm, source_inputs, heads=True, mlp=False)  # warm-up
        rec = statistics.median(_time(lambda: record_sites(vlm, source_inputs, heads=True, mlp=False), device)
                                for _ in range(repeats))
        source = record_sites(vlm, source_inputs, heads=True, mlp=False)
        packed_patch_logits(vlm, base, source, masks[:chunk], chunk=chunk)
        _floor(vlm, base, min(chunk, len(masks)), chunk)
        fast, fast_mib = _timed(lambda: packed_patch_logits(vlm, base, source, masks, chunk=chunk), device, repeats)
        with hooked(vlm.model, vlm.site, []):
            floor = statistics.median(_time(lambda: _floor(vlm, base, len(masks), chunk), device) for _ in range(repeats))
        pick = torch.arange(len(masks))
        if 0 < naive_sample < len(masks):  # evenly spread over the layers
            pick = torch.linspace(0, len(masks) - 1, naive_sample).round().long()
        naive, naive_mib = _timed(lambda: naive_patch_logits(vlm, base, source, masks[pick]), device)
        naive *= len(masks) / len(pick)
        packed = packed_patch_logits(vlm, base, source, masks, chunk=chunk)[:, pick]
        reference = naive_patch_logits(vlm, base, source, masks[pick])
        diff = float((packed - reference).abs().max())
        rel = diff / float(reference.abs().max())
    return {"model": label, "device": str(device), "probes": n_probes, "variants": len(masks), "naive": naive, "fast": fast,
            "floor": floor, "naive_timed": len(pick), "fast_mib": fast_mib, "naive_mib": naive_mib, "source": rec,
            "max_diff": diff, "max_rel": rel}


def organism(device: str = "cpu") -> tuple[VLM, str]:
    from transformers import AutoModelForImageTextToText, LlavaForConditionalGeneration

    if (DEFAULT_MODEL / "config.json").is_file():
        return wrap_vlm(AutoModelForImageTextToText.from_pretrained(DEFAULT_MODEL).to(device)), "organism"
    torch.manual_seed(0)
    model = LlavaForConditionalGeneration(llava_config(len(word_tokenizer()))).to(device)
    return wrap_vlm(model), "organism-shaped (random weights; organism not built)"


def qwen25vl_shaped(device: str = "cpu") -> VLM:
    """A small random Qwen2.5-VL (real classes): 4 layers × 14 query heads (2 KV heads), head_dim 32, M-RoPE sections
    [4, 6, 6] (the 7B's [16, 24, 24] at a quarter of its head_dim), a 4-block vision tower (patch 14, 2×2 merge), fp32."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    text = dict(vocab_size=1024, hidden_size=448, intermediate_size=1024, num_hidden_layers=4, num_attention_heads=14,
                num_key_value_heads=2, head_dim=32, max_position_embeddings=4096, bos_token_id=1, eos_token_id=2, pad_token_id=0,
                rope_scaling={"rope_type": "default", "type": "mrope", "mrope_section": [4, 6, 6]})
    vision = dict(depth=4, hidden_size=128, intermediate_size=256, out_hidden_size=448, num_heads=4, patch_size=14,
                  spatial_merge_size=2, temporal_patch_size=2, in_channels=3, window_size=112, fullatt_block_indexes=[3])
    cfg = Qwen2_5_VLConfig(text_config=text, vision_config=vision, image_token_id=1000, video_token_id=1001,
                           vision_start_token_id=1002)
    torch.manual_seed(0)
    with torch.device(device):
        model = Qwen2_5_VLForConditionalGeneration(cfg).eval()
    return wrap_vlm(model)


def llava7b_shaped(device: str = "cuda") -> VLM:
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

    text = LlamaConfig(vocab_size=32064, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
                       num_key_value_heads=32, max_position_embeddings=4096)
    vision = CLIPVisionConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                              image_size=336, patch_size=14, projection_dim=768)
    cfg = LlavaConfig(vision_config=vision, text_config=text, image_token_index=32000, vision_feature_select_strategy="default",
                      vision_feature_layer=-2)
    torch.manual_seed(0)
    with torch.device(device):
        model = LlavaForConditionalGeneration(cfg).to(torch.bfloat16)
    return wrap_vlm(model)


def qwen25vl7b_config():
    """Qwen2.5-VL-7B-Instruct's shape (its hub config.json): text 28 layers, hidden 3584, 28 query heads on 4 KV heads
    (head_dim 128), intermediate 18944, vocab 152064, M-RoPE sections [16, 24, 24] (t, h, w over head_dim / 2 = 64
    frequencies), rope θ 10⁶; vision 32 blocks of width 1280 (16 heads), window attention (112 px) with full attention
    at blocks 7, 15, 23, 31, patch 14, 2×2 merge into 3584. Only the config: no weights are made here."""
    from transformers import Qwen2_5_VLConfig

    text = dict(vocab_size=152064, hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
                num_key_value_heads=4, head_dim=128, max_position_embeddings=128000, rms_norm_eps=1e-6, bos_token_id=151643,
                eos_token_id=151645, tie_word_embeddings=False,
                rope_scaling={"rope_type": "default", "type": "mrope", "mrope_section": [16, 24, 24], "rope_theta": 1000000.0})
    vision = dict(depth=32, hidden_size=1280, intermediate_size=3420, out_hidden_size=3584, num_heads=16, patch_size=14,
                  spatial_merge_size=2, temporal_patch_size=2, in_channels=3, window_size=112,
                  fullatt_block_indexes=[7, 15, 23, 31], hidden_act="silu")
    return Qwen2_5_VLConfig(text_config=text, vision_config=vision, image_token_id=151655, video_token_id=151656,
                            vision_start_token_id=151652, tie_word_embeddings=False)


def qwen25vl7b_shaped(device: str = "cuda") -> VLM:
    """A random-weight Qwen2.5-VL-7B (:func:`qwen25vl7b_config`, seed 0) in bf16 on ``device`` (~8.3B parameters, ~17 GB)."""
    from transformers import Qwen2_5_VLForConditionalGeneration

    torch.manual_seed(0)
    with torch.device(device):
        model = Qwen2_5_VLForConditionalGeneration(qwen25vl7b_config()).to(torch.bfloat16).eval()
    return wrap_vlm(model)


def _load() -> str:
    """The 1-, 5- and 15-minute load averages (other processes share this machine's cores)."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _table(title: str, rows: list[dict], gpu: bool, patch: bool = False) -> None:
    t = Table(title=title)
    cols = ["model", "device", "probes", "variants"] + (["source"] if patch else []) + [
        "naive", "fast", "floor", "fast/naive", "fast/floor", "naive peak MiB", "fast peak MiB"] + (
        ["max |Δ|", "÷ max |logit|"] if patch else [])
    for c in cols:
        t.add_column(c, justify="right")
    if gpu:
        t.caption = f"GPU: {torch.cuda.get_device_name()}, torch {torch.__version__}"
    for r in rows:
        naive = f"{r['naive']:.2f}" + (f" (est. from {r['naive_timed']})" if r["naive_timed"] < r["variants"] else "")
        t.add_row(r["model"], r["device"], str(r["probes"]), str(r["variants"]), *([f"{r['source']:.3f}"] if patch else []),
                  naive, f"{r['fast']:.3f}", f"{r['floor']:.3f}", f"{r['naive'] / r['fast']:.1f}x",
                  f"{r['fast'] / r['floor']:.2f}x", f"{r['naive_mib']:.1f}", f"{r['fast_mib']:.1f}",
                  *([f"{r['max_diff']:.1e}", f"{r['max_rel']:.1e}"] if patch else []))
    Console(width=170).print(t)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--probes", type=int, default=16)
    ap.add_argument("--gpu-probes", type=int, default=16)
    ap.add_argument("--gpu-naive-variants", type=int, default=96, help="naive variants timed at 7B shape (0 = all)")
    ap.add_argument("--gpu", choices=("auto", "on", "off"), default="auto",
                    help="the 7B-shaped GPU rows (LLaVA-1.5, Qwen2.5-VL): auto = when CUDA is available")
    ap.add_argument("--peers", choices=("on", "off"), default="on",
                    help="the organism's sweeps against TransformerLens 4's and nnsight's loops (CPU)")
    ap.add_argument("--peer-variants", type=int, default=0,
                    help="variants of each peer loop timed and scaled (0 = all of them)")
    args = ap.parse_args()
    if args.gpu == "on" and not torch.cuda.is_available():
        ap.error("--gpu on needs CUDA, which torch does not see here (use --gpu auto or off)")
    gpu = args.gpu == "on" or (args.gpu == "auto" and torch.cuda.is_available())
    torch.set_num_threads(max(1, torch.get_num_threads()))
    print(f"versions: torch {torch.__version__}, transformers {version('transformers')}, transformer-lens "
          f"{version('transformer-lens')}, nnsight {version('nnsight')}; {torch.get_num_threads()} torch threads, "
          f"{os.cpu_count()} CPUs")
    print(f"load average at the start (1, 5, 15 min): {_load()}")
    rows, patch_rows = [], []
    vlm, label = organism("cpu")
    rows.append(bench(vlm, label, args.probes, chunk=1024))
    patch_rows.append(bench_patch(vlm, label, args.probes, chunk=1024))
    qwen = qwen25vl_shaped("cpu")
    rows.append(bench(qwen, "Qwen2.5-VL-shaped (random, small)", args.probes, chunk=1024, make_inputs=_qwen_inputs))
    del qwen
    if gpu:
        llava = llava7b_shaped("cuda")
        label = "LLaVA-1.5-7B-shaped (random, bf16)"
        rows.append(bench(llava, label, args.gpu_probes, chunk=1024, naive_sample=args.gpu_naive_variants))
        patch_rows.append(bench_patch(llava, label, args.gpu_probes, chunk=1024, naive_sample=args.gpu_naive_variants))
        del llava
        torch.cuda.empty_cache()  # return the LLaVA model's blocks before the second 7B model
        qwen = qwen25vl7b_shaped("cuda")
        label, make = "Qwen2.5-VL-7B-shaped (random, bf16, 448² image)", functools.partial(_qwen_inputs, image=448)
        rows.append(bench(qwen, label, args.gpu_probes, chunk=1024, naive_sample=args.gpu_naive_variants, make_inputs=make))
        patch_rows.append(bench_patch(qwen, label, args.gpu_probes, chunk=1024, naive_sample=args.gpu_naive_variants,
                                      make_inputs=make))
        del qwen
        torch.cuda.empty_cache()
    _table("last-token head sweep, α ∈ {0, 0.5, 2} on every head (one run, seconds)", rows, gpu)
    for r in rows:
        print(f"{r['model']}: fast/naive: {r['naive'] / r['fast']:.1f}x  (fast is {r['fast'] / r['floor']:.2f}x the floor)")
    _table("last-token patching, every head (one variant a head; the source's head outputs recorded once, "
           "its time apart: 'source'; seconds)", patch_rows, gpu, patch=True)
    for r in patch_rows:
        print(f"{r['model']} patching: fast/naive: {r['naive'] / r['fast']:.1f}x  (fast is {r['fast'] / r['floor']:.2f}x "
              f"the floor; max |packed − naive| {r['max_diff']:.1e} on the logits, {r['max_rel']:.1e} of the largest)")
    if args.peers == "on":
        from bench_peers import compare, tables

        from workbench.models.load import load_vlm

        if not (DEFAULT_MODEL / "config.json").is_file():
            print("peers: skipped (the organism is not built in assets/models/organism)")
        else:
            result = compare(load_vlm(DEFAULT_MODEL), args.probes, peer_variants=args.peer_variants)
            tables(result)
            for key, what in (("heads", "head sweep"), ("patch", "patching")):
                for r in result[key][2:]:
                    print(f"{what}: workbench packed vs {r['tool']}: {r['seconds'] / r['ref']:.1f}x  "
                          f"(max |Δ| {r['max_diff']:.1e})")
    print(f"load average at the end (1, 5, 15 min): {_load()}")


if __name__ == "__main__":
    main()
