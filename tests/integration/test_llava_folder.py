"""A local LLaVA checkpoint end to end: offline loading, prompts, left padding, backend agreement, hub errors."""

import os
import subprocess
import sys
import time

import pytest
import torch

from workbench import metrics
from workbench.errors import WorkbenchError
from workbench.interventions.backends import make_backend
from workbench.interventions.core import HeadScale, MlpScale
from workbench.models.load import fingerprint, load_vlm
from workbench.models.prompts import build_batch, option_token_ids, prompt_text
from workbench.models.scaffold import probe_vocabulary, word_tokenizer


def test_folder_loads_offline_through_all_three_loaders(llava_folder):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    code = f"""
import torch
from transformers import AutoModelForImageTextToText, AutoProcessor
from workbench.models.load import load_vlm
p = AutoProcessor.from_pretrained({str(llava_folder)!r})
m = AutoModelForImageTextToText.from_pretrained({str(llava_folder)!r})
v = load_vlm({str(llava_folder)!r})
print(type(p).__name__, type(m).__name__, type(v.nn).__name__, v.site.shape)
"""
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "LlavaProcessor LlavaForConditionalGeneration TransformersModel (2, 4)"


def test_prompts_use_the_chat_template_and_left_padding(llava_vlm, probes32):
    items = list(probes32.items[:4])
    batch = build_batch(llava_vlm, probes32, items)
    tok = llava_vlm.processor.tokenizer
    assert prompt_text(llava_vlm.processor, "Is there a red circle?") == "USER: <image>\nIs there a red circle? ASSISTANT:"
    mask = batch.inputs["attention_mask"]
    assert mask[:, -1].all() and not mask.all(), "rows of different length, padded on the left"
    for row in range(len(items)):
        ids = batch.inputs["input_ids"][row][mask[row].bool()].tolist()
        assert tok.convert_ids_to_tokens(ids[-2:]) == ["ASSISTANT", ":"]
        assert (batch.inputs["input_ids"][row] == llava_vlm.model.config.image_token_id).sum() == 16
        opts = [tok.convert_ids_to_tokens(i) for i in batch.option_ids[row].tolist() if i >= 0]
        assert opts == list(items[row].options) and batch.answer[row] == items[row].answer_index


def test_every_probe_word_is_in_the_vocabulary(probes32):
    tok = word_tokenizer()
    unk = tok.convert_tokens_to_ids("<unk>")
    for it in probes32:
        assert unk not in tok(it.question)["input_ids"], it.question
        assert all(tok.convert_tokens_to_ids(o) != unk for o in it.options)
    assert len(probe_vocabulary()) == len(set(probe_vocabulary()))


def test_options_sharing_a_first_token_are_refused(llava_vlm):
    with pytest.raises(WorkbenchError, match="share their first token"):
        option_token_ids(llava_vlm.processor.tokenizer, "USER: ASSISTANT:", ["left right", "left above"])


@pytest.mark.parametrize("backend", ["nnsight", "torch"])
def test_last_token_is_right_under_left_padding(llava_vlm, probes32, backend):
    """Each row of a padded batch gives the same last-token logits as that probe alone."""
    items = list(probes32.items[:4])
    be = make_backend(llava_vlm, backend)
    iv = [HeadScale.at(llava_vlm.site, {(1, 2): 0.0})]
    together = be.last_logits(build_batch(llava_vlm, probes32, items).inputs, iv)
    for row, it in enumerate(items):
        alone = be.last_logits(build_batch(llava_vlm, probes32, [it]).inputs, iv)[0]
        assert (alone - together[row]).abs().max().item() <= 1e-5


def test_transformer_lens_agrees_on_per_head_effects(llava_vlm, probes32):
    """Per-head effects (Δ logit difference, α = 0 at the last token) on every head, both backends."""
    batch = build_batch(llava_vlm, probes32, list(probes32.items[:6]))
    nn, tl = make_backend(llava_vlm, "nnsight"), make_backend(llava_vlm, "transformer_lens")

    def effects(be):
        base = metrics.logit_diff(be.last_logits(batch.inputs), batch.option_ids, batch.answer)
        out = torch.zeros(*llava_vlm.site.shape, len(batch))
        for layer in range(llava_vlm.site.n_layers):
            for head in range(llava_vlm.site.n_heads):
                lg = be.last_logits(batch.inputs, [HeadScale.at(llava_vlm.site, [(layer, head)])])
                out[layer, head] = metrics.logit_diff(lg, batch.option_ids, batch.answer) - base
        return out

    a, b = effects(nn), effects(tl)
    assert b.abs().max() > 1e-2, "effects must be non-trivial for the comparison to mean anything"
    assert (a - b).abs().max().item() <= 1e-4 * b.abs().max().item()
    mixed = [HeadScale.at(llava_vlm.site, {(0, 1): 2.0}, positions="all"), MlpScale.at(llava_vlm.site, {1: 0.5})]
    x, y = nn.last_logits(batch.inputs, mixed), tl.last_logits(batch.inputs, mixed)
    assert (x - y).abs().max().item() <= 1e-4 * y.abs().max().item()


def test_fingerprint_is_stable_and_sees_weight_changes(llava_vlm):
    fp = fingerprint(llava_vlm.model)
    assert fp == llava_vlm.fingerprint and len(fp) == 64
    w = llava_vlm.site.attn_out(llava_vlm.model, 0).weight
    original = w[0, 0].item()
    with torch.no_grad():
        w[0, 0] = original + 1.0
        try:
            assert fingerprint(llava_vlm.model) != fp
        finally:
            w[0, 0] = original
    assert fingerprint(llava_vlm.model) == fp


def test_hub_id_without_network_fails_at_once(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WorkbenchError, match="not in the local cache and HF_HUB_OFFLINE is set"):
        load_vlm("some-org/some-vlm")
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens on the discard port
    start = time.monotonic()
    with pytest.raises(WorkbenchError, match="needs the Hugging Face hub, which is unreachable"):
        load_vlm("some-org/some-vlm")
    assert time.monotonic() - start < 10


@pytest.mark.parametrize("arg,msg", [("../nowhere/model", "model folder ../nowhere/model does not exist"),
                                     ("bad id with spaces", "neither a model folder nor a hub id")])
def test_bad_model_arguments(arg, msg):
    with pytest.raises(WorkbenchError, match=msg):
        load_vlm(arg)


def test_folder_without_config(tmp_path):
    with pytest.raises(WorkbenchError, match="has no config.json"):
        load_vlm(tmp_path)


def test_cli_model_info_and_errors(llava_folder, monkeypatch):
    from typer.testing import CliRunner

    from workbench.cli import app

    runner = CliRunner()
    r = runner.invoke(app, ["model", "info", str(llava_folder)])
    assert r.exit_code == 0, r.output
    assert "LLaVA-1.5" in r.output and "key/value heads" in r.output
    r = runner.invoke(app, ["model", "families"])
    assert r.exit_code == 0 and "Qwen2.5-VL" in r.output and "SmolVLM" in r.output
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    r = runner.invoke(app, ["model", "info", "org/not-here"])
    assert r.exit_code == 2 and "HF_HUB_OFFLINE is set" in r.output
    r = runner.invoke(app, ["model", "info", str(llava_folder), "--dtype", "float8"])
    assert r.exit_code == 2 and "unknown dtype 'float8'" in r.output
