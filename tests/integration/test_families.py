"""Every VLM family from a checkpoint folder, the user's path: ``model info``, ``load_vlm``, ``build_batch``, oracles, ``sweep``,
ScAle training (``train_scales``) and deployment (``apply_scales`` + the model's own ``generate()``).

Each folder is built once per session by :func:`workbench.models.scaffold.build_family_folder` (the family's real
config, model and processor classes, a PIL image processor, a word-level tokenizer with the family's special tokens,
its chat template) and then used only as a user would: through the CLI and ``load_vlm``. torchvision is absent here,
so the families whose processor has a video part (Qwen2-VL, Qwen2.5-VL, SmolVLM) load their image-only form; the
ordinary path with torchvision installed is not exercised (no CPU torchvision build exists for this environment).

Oracles, as in test_oracles.py: α = 1 everywhere reproduces the un-hooked logits; α = 0 on one head at all positions
equals zeroing that head's ``o_proj`` input columns in a copy of the weights; the sweep's stored effect of one head
equals the effect computed here directly. ScAle: the trainer's reported loss at u = 0 is the plain model's, and after
one step it equals the loss of the saved vector deployed by ``apply_scales``; an all-ones vector leaves ``generate()``'s
tokens unchanged, and a head-zeroing one gives first-token logits equal to the nnsight backend's. (In the tiny Mllama,
layer 1 is the cross-attention layer, which does not mix text positions, so there an edit at earlier positions cannot
reach the last token: "last" and "all" positions coincide and these tests cannot tell them apart for that family.)
"""

from __future__ import annotations

import copy

import pytest
import torch
import transformers
from typer.testing import CliRunner

from tests.conftest import cached_probes
from workbench import metrics
from workbench.cli import app
from workbench.errors import WorkbenchError
from workbench.interventions.backends import make_backend
from workbench.interventions.core import HeadScale, MlpScale
from workbench.models.load import load_processor, load_vlm
from workbench.models.prompts import build_batch, prompt_text
from workbench.models.scaffold import FAMILY
from workbench.models.sites import SITES

runner = CliRunner()

# family key → (the sites-table family it must resolve to, image tokens per 32 px probe image and how that number arises)
EXPECTED = {
    "llava": ("LLaVA-1.5", 16),  # conftest's llava_folder (save_llava_folder): 4×4 CLIP patches, CLS dropped ("default")
    "qwen2_5_vl": ("Qwen2.5-VL", 16),  # 32 px → 8×8 patches of 4 px (image_grid_thw [1, 8, 8]) / merge 2² = 16
    "qwen2_vl": ("Qwen2-VL", 16),
    "llava_next": ("LLaVA-NeXT", 36),  # anyres: base 4×4 = 16, one 32 px tile 4×4 with a newline per row 4·(4+1) = 20
    "idefics3": ("Idefics3 / SmolVLM", 20),  # resized to 64 px, split 2×2 crops of 32 px + the global image; 4 tokens each
    "smolvlm": ("Idefics3 / SmolVLM", 20),
    "gemma3": ("Gemma 3", 4),  # mm_tokens_per_image: 4×4 patches pooled to 2×2
    "paligemma": ("PaliGemma", 16),  # 4×4 SigLIP patches, no pooling; the processor puts them before <bos> and the text
    "llava_onevision": ("LLaVA-OneVision", 36),  # anyres as NeXT: base 16 SigLIP patches ("full") + one tile 4·(4+1) = 20
    "qwen3_vl": ("Qwen3-VL", 16),  # as Qwen2-VL: [1, 8, 8] / 2²
    "internvl": ("InternVL", 4),  # 4×4 patches, pixel-shuffled by 0.5 → 2×2, between <img> and </img>
    "mllama": ("Mllama (Llama 3.2 Vision)", 1),  # one <|image|>: the image enters through the cross-attention layer
}
KEYS = tuple(EXPECTED)
# family key → (processor class, image processor class) the folder's processor must be
CLASSES = {"llava": ("LlavaProcessor", "CLIPImageProcessorPil"),
           **{k: (f.processor, f.image_processor) for k, f in FAMILY.items()}}
# their AutoProcessor needs torchvision for its video processor
VIDEO_FAMILIES = ("qwen2_5_vl", "qwen2_vl", "smolvlm", "llava_onevision", "qwen3_vl", "internvl")


def test_every_family_here_has_a_builder_and_a_row():
    families = {r.family for r in SITES}
    assert set(KEYS) - {"llava"} == set(FAMILY) and all(EXPECTED[k][0] in families for k in KEYS)


@pytest.fixture(scope="session")
def family_folders(tmp_path_factory, llava_folder):
    from workbench.models.scaffold import build_family_folder

    root = tmp_path_factory.mktemp("families")
    return {"llava": llava_folder, **{k: build_family_folder(k, root / k) for k in KEYS if k != "llava"}}


@pytest.fixture(scope="session")
def family_vlms(family_folders):
    return {k: load_vlm(f, attn_implementation="eager") for k, f in family_folders.items()}


@pytest.fixture(scope="module")
def probes3():
    return cached_probes(n=4, seed=2, canvas=32, object_size=7)


@pytest.mark.parametrize("key", KEYS)
def test_model_info_prints_the_family(key, family_folders):
    r = runner.invoke(app, ["model", "info", str(family_folders[key])])
    assert r.exit_code == 0, r.output
    assert EXPECTED[key][0] in r.output and "query heads / layer" in r.output
    processor, image_processor = CLASSES[key]
    no_video = "; no video: torchvision is not installed" if key in VIDEO_FAMILIES else ""
    assert f"{processor} ({image_processor}{no_video})" in " ".join(r.output.split()), r.output
    text = " ".join(r.output.replace("│", " ").split())
    if key == "mllama":  # layer 1 is cross-attention: its heads are listed at their own site, never hidden
        assert ("head site (self-attention: layers 0) input of" in text
                and "head site (cross-attention: layers 1) input of" in text), text
        assert "layers.<l>.cross_attn.o_proj" in text
    else:
        assert "head site input of" in text and "cross-attention" not in text, text


@pytest.mark.parametrize("key", KEYS)
def test_load_vlm_resolves_the_site_and_the_real_processor(key, family_vlms):
    vlm = family_vlms[key]
    processor, image_processor = CLASSES[key]
    assert vlm.site.row.family == EXPECTED[key][0]
    assert (vlm.site.n_layers, vlm.site.n_heads, vlm.site.n_kv_heads, vlm.site.head_dim) == (2, 4, 2, 16)
    assert type(vlm.processor).__name__ == processor and isinstance(vlm.processor, getattr(transformers, processor))
    assert type(vlm.processor.image_processor).__name__ == image_processor
    assert vlm.nn.processor is vlm.processor, "nnsight's wrapper uses the processor load_vlm built"


@pytest.mark.parametrize("key", VIDEO_FAMILIES)
def test_without_torchvision_the_image_processor_loads_alone_and_says_so(key, family_folders, capsys):
    """AutoProcessor itself fails on these folders (the reason for the fallback); load_processor says so in one line."""
    from transformers import AutoProcessor

    from workbench.models import load

    with pytest.raises(ImportError, match="(?i)torchvision"):
        AutoProcessor.from_pretrained(family_folders[key])
    load._WARNED.discard(FAMILY[key].processor)
    capsys.readouterr()
    processor = load_processor(str(family_folders[key]))
    load_processor(str(family_folders[key]))
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"torchvision is not installed: {FAMILY[key].processor} loads its image processor only; "
                   "video inputs are unavailable"]
    assert processor.chat_template and processor.video_processor.num_frames is None
    with pytest.raises(WorkbenchError, match="video inputs need torchvision"):
        processor.video_processor([])


@pytest.mark.parametrize("key", KEYS)
def test_build_batch_carries_the_processors_image_token_expansion(key, family_vlms, probes3):
    vlm = family_vlms[key]
    items = list(probes3.items[:3])
    batch = build_batch(vlm, probes3, items)
    ids, mask = batch.inputs["input_ids"], batch.inputs["attention_mask"]
    image_token = vlm.model.config.image_token_id
    n_image = (ids == image_token).sum(1)
    assert n_image.tolist() == [EXPECTED[key][1]] * len(items)
    if "image_grid_thw" in batch.inputs:  # Qwen: (t·h·w)/merge² tokens per image, read from the processor's own grid
        merge = vlm.processor.image_processor.merge_size
        assert n_image.tolist() == (batch.inputs["image_grid_thw"].prod(-1) // merge**2).tolist()
    assert mask[:, -1].all(), "left padding: index −1 is every row's last real token"
    assert "labels" not in batch.inputs
    with torch.no_grad():  # the model itself checks image tokens against image features and refuses a mismatch
        out = vlm.model(**batch.inputs)
    assert out.loss is None and out.logits.shape == (len(items), ids.shape[1], vlm.model.config.text_config.vocab_size)
    tok = vlm.processor.tokenizer
    for row, it in enumerate(items):
        opts = [tok.convert_ids_to_tokens(i) for i in batch.option_ids[row].tolist() if i >= 0]
        assert opts == list(it.options)


@pytest.mark.parametrize("key", ["gemma3", "smolvlm", "mllama", "paligemma"])
def test_what_build_batch_corrects(key, family_vlms, probes3):
    """The processor's plain call shows what build_batch must not do: a flat image list is one sample with all the
    images (Gemma 3, SmolVLM, Mllama); PaliGemma's output holds labels."""
    vlm = family_vlms[key]
    items = list(probes3.items[:3])
    prompts = [prompt_text(vlm.processor, it.question) for it in items]
    flat = [probes3.image(it) for it in items]
    if key == "paligemma":
        assert "labels" in vlm.processor(text=prompts, images=flat, padding=True, return_tensors="pt")
    else:
        with pytest.raises(ValueError, match=r"Found \[1, 1, 1\] .* and \[3\] images per sample"):
            vlm.processor(text=prompts, images=flat, padding=True, return_tensors="pt")


@pytest.mark.parametrize("key", KEYS)
def test_oracles_identity_and_weight_surgery(key, family_vlms, probes3):
    vlm = family_vlms[key]
    inputs = build_batch(vlm, probes3, list(probes3.items[:3])).inputs
    with torch.no_grad():
        clean = vlm.model(**inputs).logits[:, -1]
    be = make_backend(vlm, "nnsight")
    identity = [HeadScale.identity(vlm.site, "all"), MlpScale(torch.ones(vlm.site.n_layers), "all")]
    assert (be.last_logits(inputs, identity) - clean).abs().max().item() <= 1e-6
    layer, head, d = 1, 3, vlm.site.head_dim
    surgery = copy.deepcopy(vlm.model)
    with torch.no_grad():
        vlm.site.attn_out(surgery, layer).weight[:, head * d:(head + 1) * d] = 0
        expected = surgery(**inputs).logits[:, -1]
    got = be.last_logits(inputs, [HeadScale.at(vlm.site, [(layer, head)], 0.0, positions="all")])
    assert (got - expected).abs().max().item() <= 1e-5
    assert (got - clean).abs().max().item() > 1e-4, "the ablation must change something"


@pytest.mark.parametrize("key", KEYS)
def test_sweep_with_the_default_engine(key, family_folders, family_vlms, probes3, tmp_path):
    from workbench.store.effects import EffectStore

    probes3.save(tmp_path / "probes")
    r = runner.invoke(app, ["sweep", "--model", str(family_folders[key]), "--probes", str(tmp_path / "probes"), "--alpha", "0",
                            "--store", str(tmp_path / "s")])
    assert r.exit_code == 0, r.output
    (entry,) = EffectStore(tmp_path / "s").ls()
    assert entry.complete
    frame = EffectStore(tmp_path / "s").read(entry.key)
    row = frame[(frame["layer"] == 1) & (frame["head"] == 3)]
    vlm = family_vlms[key]
    batch = build_batch(vlm, probes3, list(probes3.items))
    be = make_backend(vlm, "nnsight")
    base = metrics.logit_diff(be.last_logits(batch.inputs), batch.option_ids, batch.answer)
    hooked = metrics.logit_diff(be.last_logits(batch.inputs, [HeadScale.at(vlm.site, [(1, 3)], 0.0)]), batch.option_ids,
                                batch.answer)
    direct = (hooked - base).tolist()  # per probe, in probe-set order
    stored = row.set_index("probe_id").loc[[it.id for it in probes3.items], "value"].tolist()
    assert max(abs(a - b) for a, b in zip(stored, direct)) <= 1e-4 * max(1.0, max(map(abs, direct))), (stored, direct)
    assert max(map(abs, direct)) > 1e-4, "the effect must be non-trivial for the comparison to mean anything"


@pytest.fixture(scope="module")
def unsupported_folder(tmp_path_factory):
    """A real image-text-to-text checkpoint with no row in the sites table: a tiny VipLLaVA."""
    from transformers import CLIPImageProcessorPil, LlavaProcessor, VipLlavaConfig, VipLlavaForConditionalGeneration

    from workbench.models.scaffold import CHAT_TEMPLATE, SPECIALS, word_tokenizer

    folder = tmp_path_factory.mktemp("unsupported") / "vipllava"
    tok = word_tokenizer()
    config = VipLlavaConfig(vision_config=dict(model_type="clip_vision_model", hidden_size=32, intermediate_size=64,
                                               num_hidden_layers=2, num_attention_heads=2, image_size=32, patch_size=8,
                                               projection_dim=32),
                            text_config=dict(model_type="llama", hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                                             num_attention_heads=4, num_key_value_heads=2, vocab_size=len(tok)),
                            vision_feature_layers=[-1], image_token_index=SPECIALS.index("<image>"))
    torch.manual_seed(0)
    VipLlavaForConditionalGeneration(config).save_pretrained(folder)
    LlavaProcessor(image_processor=CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}),
                   tokenizer=tok, patch_size=8, vision_feature_select_strategy="default",
                   chat_template=CHAT_TEMPLATE).save_pretrained(folder)
    return folder


def _one_line(result) -> str:
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


def test_unsupported_architecture_folder_is_one_line_exit_2(unsupported_folder):
    r = runner.invoke(app, ["model", "info", str(unsupported_folder)])
    assert r.exit_code == 2
    assert "unsupported architecture 'vipllava'" in _one_line(r)


def test_processor_needing_a_missing_package_is_one_line_exit_2(family_folders, monkeypatch):
    monkeypatch.setattr("transformers.models.smolvlm.processing_smolvlm.num2words", None)
    r = runner.invoke(app, ["model", "info", str(family_folders["smolvlm"])])
    assert r.exit_code == 2
    line = _one_line(r)
    assert "needs num2words, which is not installed" in line and "pip install num2words" in line


def _break_json(folder):
    (folder / "processor_config.json").write_text('{"image_processor": {')  # cut off mid-object


def _break_class(folder):
    cfg = folder / "processor_config.json"
    cfg.write_text(cfg.read_text().replace('"Qwen2_5_VLProcessor"', '"NoSuchVLProcessor"'))


@pytest.mark.parametrize("breakage,problem", [(_break_json, "is not a valid JSON file"),
                                               (_break_class, "names processor class 'NoSuchVLProcessor', which transformers")],
                         ids=["invalid-json", "unknown-processor-class"])
def test_processor_that_cannot_be_built_is_one_line_exit_2(breakage, problem, family_folders, tmp_path):
    """A Qwen2.5-VL folder whose processor_config.json is cut off, or names a processor class transformers lacks (where
    AutoProcessor silently falls back to the bare tokenizer): one line naming the folder, the file and the fix."""
    import shutil

    folder = shutil.copytree(family_folders["qwen2_5_vl"], tmp_path / "qwen2_5_vl")
    breakage(folder)
    r = runner.invoke(app, ["model", "info", str(folder)])
    assert r.exit_code == 2
    line = _one_line(r)
    assert f"the processor of {str(folder)!r} could not be built" in line and problem in line, line
    assert "processor_config.json" in line and "re-download" in line, line


# ---------------------------------------------------------------- ScAle training and deployment, per family

def _hooks(model: torch.nn.Module) -> int:
    return sum(len(m._forward_pre_hooks) + len(m._forward_hooks) for m in model.modules())


def _answer_ce(vlm, batch, vector=None) -> float:
    """Cross-entropy of each probe's answer token at the last position, averaged over ``batch``: with ``vector``
    deployed by :func:`apply_scales` on the plain transformers model (no workbench backend in the way)."""
    from workbench.scale.apply import apply_scales
    from workbench.scale.train import answer_tokens

    with torch.no_grad():
        if vector is None:
            logits = vlm.model(**batch.inputs).logits[:, -1]
        else:
            with apply_scales(vlm.model, vector):
                logits = vlm.model(**batch.inputs).logits[:, -1]
    return float(torch.nn.functional.cross_entropy(logits.float(), answer_tokens(batch)))


@pytest.mark.parametrize("key", KEYS)
def test_scale_train_lowers_the_training_loss(key, family_vlms, probes3):
    """A few AdamW steps of ScAle (both parts, last token) on the 4 probes, one batch of 4 per epoch.

    Epoch 1's reported loss is the loss at u = 0, so it must equal the plain model's; a one-epoch vector (one
    optimizer step) deployed with ``apply_scales`` must give the loss the two-epoch run reports for its second epoch
    (seeded, so its first step is the same; the trainer's differentiable hooks and the deployed hooks are the same
    edit); and that loss is lower. (The second step is not asserted to descend further: at lr 0.05 and s_max 10 one
    Adam step moves each scale by up to 0.5, which can overshoot on 4 probes.)"""
    from workbench.scale.train import TrainConfig, train_scales

    vlm = family_vlms[key]
    batch = build_batch(vlm, probes3, list(probes3.items))
    cfg = TrainConfig(mode="both", positions="last", epochs=1, batch=4, lr=0.05, val_fraction=0.0, seed=0)
    one = train_scales(vlm, probes3, cfg)
    two = train_scales(vlm, probes3, TrainConfig(**{**cfg.__dict__, "epochs": 2}))
    assert one.shape == two.shape == vlm.site.shape and tuple(one.mlp.shape) == (vlm.site.n_layers,)
    assert one.model_fingerprint == two.model_fingerprint == vlm.fingerprint and one.probes_hash == probes3.hash
    assert (one.attn - 1).abs().min() > 0 and (one.mlp - 1).abs().min() > 0, "every trained scale moved off 1"
    h = two.metrics["history"]
    before, after_one_step = _answer_ce(vlm, batch), _answer_ce(vlm, batch, one)
    assert h[0]["train_loss"] == pytest.approx(before, rel=1e-5)
    assert h[1]["train_loss"] == pytest.approx(after_one_step, rel=1e-5)
    assert after_one_step < before - 1e-3, (before, after_one_step)


def _generate(vlm, batch, **kw):
    return vlm.model.generate(**batch.inputs, max_new_tokens=2, do_sample=False, **kw)


@pytest.mark.parametrize("key", KEYS)
def test_apply_scales_with_generate(key, family_vlms, probes3):
    """``apply_scales`` on the transformers model, then its own ``generate()`` (greedy, 2 new tokens).

    All-ones vector: exactly the un-hooked tokens. A vector zeroing two heads (one per layer) at the last token:
    the first generated token's logits equal the nnsight backend's last-token logits under the same HeadScale,
    because generate's prefill is a forward over the prompt whose last token is the prompt's last token. After
    ``remove()`` no hook is left and generate gives the un-hooked tokens again."""
    from workbench.scale.apply import apply_scales
    from workbench.scale.vector import ScaleVector

    vlm = family_vlms[key]
    site = vlm.site
    batch = build_batch(vlm, probes3, list(probes3.items[:2]))
    n_prompt = batch.inputs["input_ids"].shape[1]
    hooks = _hooks(vlm.model)
    plain = _generate(vlm, batch, output_logits=True, return_dict_in_generate=True)
    assert plain.sequences.shape == (2, n_prompt + 2)
    ones = ScaleVector(attn=torch.ones(site.shape), mlp=torch.ones(site.n_layers), model=vlm.name,
                       model_fingerprint=vlm.fingerprint)
    with apply_scales(vlm.model, ones):
        assert _hooks(vlm.model) == hooks + 2 * site.n_layers
        assert torch.equal(_generate(vlm, batch), plain.sequences)
    assert _hooks(vlm.model) == hooks
    ablate = HeadScale.at(site, [(0, 1), (1, 3)], 0.0, positions="last")
    expected = make_backend(vlm, "nnsight").last_logits(batch.inputs, [ablate])
    vector = ScaleVector(attn=ablate.alpha, mlp=torch.ones(site.n_layers), model=vlm.name, model_fingerprint=vlm.fingerprint)
    handle = apply_scales(vlm.model, vector)
    try:
        scaled = _generate(vlm, batch, output_logits=True, return_dict_in_generate=True)
    finally:
        handle.remove()
    first = scaled.logits[0]
    assert (first - expected).abs().max().item() <= 1e-5 * max(1.0, expected.abs().max().item())
    assert (first - plain.logits[0]).abs().max().item() > 1e-4, "the ablation must change the first token's logits"
    assert torch.equal(scaled.sequences[:, n_prompt], expected.argmax(-1))
    assert not handle.active and _hooks(vlm.model) == hooks
    assert torch.equal(_generate(vlm, batch), plain.sequences)
