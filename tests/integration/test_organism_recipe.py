"""The organism's training recipe and deficit planting, on a few steps (the real run is documented, not run in CI)."""

import json
import math
from dataclasses import replace

import pytest
import torch
from typer.testing import CliRunner

from workbench.cli import app
from workbench.errors import WorkbenchError
from workbench.lab.checkpoint import load_checkpoint
from workbench.lab.config import OrganismConfig
from workbench.lab.deficit import _surgery
from workbench.lab.model import build, pick_device
from workbench.lab.train import train, train_probes
from workbench.models.load import load_vlm
from workbench.organism.probesets import eval_probes

TINY = dict(n_train=256, steps=6, batch=32, eval_every=3, data="set", patch=8, grid=0, object_size=0, patch_loss=0.0, layers=2,
            heads=4, kv_heads=2, head_dim=8, vision_hidden=32, vision_layers=1)


def test_eval_set_is_fixed_held_out_and_disjoint_from_training():
    a, b = eval_probes(0), eval_probes(0)
    assert a.hash == b.hash and len(a) == 500
    held = {tuple(p) for p in a.info["heldout_pairs"]}
    train = train_probes(OrganismConfig(n_train=400))
    assert {it.split for it in train} == {"train"}
    pairs = lambda it: {(o["color"], o["shape"]) for o in it.scene["objects"]}  # noqa: E731
    assert all(pairs(it) & held for it in a) and not any(pairs(it) & held for it in train)


@pytest.mark.slow
def test_a_few_steps_write_a_loadable_model_and_curve(tmp_path):
    s1 = train(OrganismConfig(**TINY), tmp_path / "m1", device="cpu", log=lambda m: None)
    assert [p["step"] for p in s1["curve"]] == [3, 6] and s1["curve"][0]["loss"] > 0
    vlm = load_vlm(tmp_path / "m1")
    assert vlm.site.shape == (2, 4) and vlm.site.n_kv_heads == 2
    saved = json.loads((tmp_path / "m1" / "training.json").read_text())
    assert saved["eval"] == s1["eval"] and set(saved["eval"]) >= {"relation", "verify", "color", "shape", "count", "exists"}
    assert saved["threads"] == [torch.get_num_threads()], "a CPU run records its thread count (CPU sums depend on it)"
    s2 = train(OrganismConfig(**TINY), tmp_path / "m2", device="cpu", log=lambda m: None)
    def strip(curve):
        return [{k: v for k, v in point.items() if k != "seconds"} for point in curve]

    assert strip(s1["curve"]) == strip(s2["curve"]), "same seed, same run"


def test_surgery_scales_only_the_planted_columns(llava_vlm):
    model = llava_vlm.model
    before = {k: v.clone() for k, v in model.state_dict().items()}
    try:
        _surgery(model, llava_vlm.site, [(1, 2)], 0.25)
        w0, w1 = before["model.language_model.layers.1.self_attn.o_proj.weight"], llava_vlm.site.attn_out(model, 1).weight
        assert torch.equal(w1[:, 32:48], w0[:, 32:48] * 0.25)
        assert torch.equal(w1[:, :32], w0[:, :32]) and torch.equal(w1[:, 48:], w0[:, 48:])
    finally:
        model.load_state_dict(before)


def test_bad_training_arguments(tmp_path):
    r = CliRunner().invoke(app, ["lab", "train", "--out", str(tmp_path / "o"), "--steps", "0"])
    assert r.exit_code == 2 and "--steps and --batch must be positive" in r.output
    r = CliRunner().invoke(app, ["lab", "train", "--out", str(tmp_path / "o"), "--data", "stream"])
    assert r.exit_code == 2 and "unknown training data kind 'stream'" in r.output
    r = CliRunner().invoke(app, ["lab", "train", "--out", str(tmp_path / "o"), "--patch-loss", "-1"])
    assert r.exit_code == 2 and "patch_loss must be a weight ≥ 0, got -1.0" in r.output
    r = CliRunner().invoke(app, ["lab", "train", "--out", str(tmp_path / "o"), "--label-smoothing", "1"])
    assert r.exit_code == 2 and "label_smoothing must be in [0, 1), got 1.0" in r.output
    r = CliRunner().invoke(app, ["lab", "train", "--out", str(tmp_path / "o"), "--confidence", "1"])
    assert r.exit_code == 2 and "confidence must be in [0, 1), got 1.0" in r.output
    if not torch.cuda.is_available():
        with pytest.raises(WorkbenchError, match="no CUDA GPU is visible"):
            pick_device("cuda")
    assert not (tmp_path / "o").exists()
    r = CliRunner().invoke(app, ["organism", "eval", "--model", str(tmp_path / "missing")])
    assert r.exit_code == 2 and "does not exist" in r.output
    r = CliRunner().invoke(app, ["lab", "plant", "--intact", str(tmp_path / "missing"), "--out", str(tmp_path / "d")])
    assert r.exit_code == 2 and "is not a model folder" in r.output and not (tmp_path / "d").exists()


@pytest.mark.slow
def test_resumed_training_equals_an_uninterrupted_run(tmp_path):
    from safetensors.torch import load_file

    cfg = OrganismConfig(**TINY)
    whole = train(cfg, tmp_path / "whole", device="cpu", log=lambda m: None)
    ckpt = tmp_path / "state.pt"
    assert train(cfg, tmp_path / "parts", device="cpu", log=lambda m: None, checkpoint=ckpt, stop_after=3) is None
    assert ckpt.is_file()
    parts = train(cfg, tmp_path / "parts", device="cpu", log=lambda m: None, checkpoint=ckpt)
    a, b = load_file(tmp_path / "whole" / "model.safetensors"), load_file(tmp_path / "parts" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [p["loss"] for p in parts["curve"]] == [p["loss"] for p in whole["curve"]]
    with pytest.raises(WorkbenchError, match="belongs to another training config"):
        train(OrganismConfig(**{**TINY, "lr": 5e-4}), tmp_path / "other", device="cpu", log=lambda m: None, checkpoint=ckpt)


@pytest.mark.slow
def test_a_run_resumed_with_another_thread_count_records_both_and_says_so(tmp_path):
    cfg, ckpt, logged, before = OrganismConfig(**TINY), tmp_path / "state.pt", [], torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert train(cfg, tmp_path / "m", device="cpu", log=logged.append, checkpoint=ckpt, stop_after=3) is None
        assert load_checkpoint(ckpt)["threads"] == [1]
        torch.set_num_threads(2)
        summary = train(cfg, tmp_path / "m", device="cpu", log=logged.append, checkpoint=ckpt)
    finally:
        torch.set_num_threads(before)
    assert summary["threads"] == [1, 2] and json.loads((tmp_path / "m" / "training.json").read_text())["threads"] == [1, 2]
    assert any("CPU threads differ between installments ([1, 2])" in m for m in logged)


def test_plant_refuses_a_model_without_spatial_heads(llava_folder, tmp_path):
    """A random model has no head whose ablation costs 30 spatial points: planting must refuse and write nothing."""
    from workbench.lab.deficit import plant

    with pytest.raises(WorkbenchError, match="no set of 4–8 heads"):
        plant(llava_folder, tmp_path / "deficit", n_select=48, log=lambda m: None)
    assert not (tmp_path / "deficit").exists()


@pytest.mark.slow
def test_plant_writes_nothing_that_misses_the_held_out_targets_and_records_what_it_wrote(llava_folder, tmp_path):
    """With the selection margins waived, 4+ heads of a random model qualify on the selection set, but they
    cannot cost 25 held-out spatial points: refused, nothing written. With the held-out check waived too the
    folder is written, and the held-out scores in planted.json are those of the written model."""
    from workbench.evaluation import score
    from workbench.lab.card import deficit_card
    from workbench.lab.deficit import plant
    from workbench.models.load import load_vlm
    from workbench.organism import read_planted

    loose = dict(n_select=48, log=lambda m: None, factors=(0.1,), control_budget=1.0, min_drop=-1.0)
    with pytest.raises(WorkbenchError, match=r"miss the held-out targets: spatial drops -?\d+\.\d points \(needs ≥ 25\)"):
        plant(llava_folder, tmp_path / "deficit", **loose)
    assert not (tmp_path / "deficit").exists() and not (tmp_path / ".deficit.tmp").exists()
    record = plant(llava_folder, tmp_path / "deficit", **loose, targets=(-1.0, 1.0))
    assert read_planted(tmp_path / "deficit") == json.loads(json.dumps(record)) and len(record["heads"]) >= 4
    ev = eval_probes()
    a, d = (score(load_vlm(m, attn_implementation="eager"), ev) for m in (llava_folder, tmp_path / "deficit"))
    assert record["held_out"] == {"intact": pytest.approx(a.by_task()), "deficit": pytest.approx(d.by_task())}
    said = "checked on the held-out set before the folder was written"
    assert said in deficit_card(a, d, record)
    assert said not in deficit_card(a, d, {k: v for k, v in record.items() if k != "held_out"})  # older records


def test_vectorised_encoding_equals_the_processor_and_refuses_a_mismatch(llava_vlm, probes32, small_probes):
    from workbench.lab.data import encode

    proc = llava_vlm.processor
    data = encode(proc, probes32, check=len(probes32))  # every item compared with the processor's own output
    ref = proc(text=[__import__("workbench.models.prompts", fromlist=["x"]).prompt_text(proc, it.question) for it in probes32],
               images=[probes32.image(it) for it in probes32], padding="longest", return_tensors="pt")
    mine = data.batch(torch.arange(len(probes32)), torch.device("cpu"))
    assert (torch.equal(mine["input_ids"], ref["input_ids"])
            and torch.allclose(mine["pixel_values"], ref["pixel_values"], atol=1e-5))
    with pytest.raises(WorkbenchError, match="disagrees with the model's processor"):
        encode(proc, small_probes.filter(lambda it: True))  # 64 px scenes for a 32 px model: the processor resizes


def test_training_pool_is_the_same_for_any_worker_count_and_round_trips(tmp_path):
    """A pool is chunks of independent streams: 1 or 2 workers give identical arrays; its scenes never hold a
    held-out pair; saved and loaded (pixels memory-mapped) it is unchanged; another config's key is refused."""
    from workbench.lab.data import CHUNK, load_pool, pool_key, render_pool, save_pool

    cfg = OrganismConfig(**{**TINY, "n_train": CHUNK + 40, "data": "pool"})
    _, _, proc = build(cfg, tmp_path / "m")
    one = render_pool(proc, cfg.seed, cfg.n_train, cfg.scene, workers=1, log=lambda m: None)
    two = render_pool(proc, cfg.seed, cfg.n_train, cfg.scene, workers=2, log=lambda m: None)
    assert one.pixels.shape == (CHUNK + 40, 64, 64, 3) and torch.equal(one.pixels, two.pixels)
    assert torch.equal(one.input_ids, two.input_ids) and torch.equal(one.option_ids, two.option_ids) and one.tasks == two.tasks
    assert one.objects.shape == (CHUNK + 40, 3, 4) and torch.equal(one.objects, two.objects)
    assert not torch.equal(one.pixels[:40], one.pixels[CHUNK:])  # chunks draw from different streams
    from workbench.probes.generate import ProbeConfig, heldout_pairs, train_chunk

    held = heldout_pairs(ProbeConfig(seed=cfg.seed))
    assert held and not any({(o.color, o.shape) for o in scene.objects} & held
                            for scene, _ in train_chunk(ProbeConfig(seed=0), 3, 500))
    key = pool_key(cfg.seed, cfg.n_train, cfg.scene)
    save_pool(one, tmp_path / "pool", key)
    back = load_pool(tmp_path / "pool", key)
    assert torch.equal(back.pixels, one.pixels) and torch.equal(back.answer_token, one.answer_token)
    assert torch.equal(back.objects, one.objects)
    assert sorted(p.name for p in (tmp_path / "pool").iterdir()) == ["meta.pt", "pixels.npy"]  # no temporary files left
    with pytest.raises(WorkbenchError, match="was built for"):
        load_pool(tmp_path / "pool", pool_key(cfg.seed + 1, cfg.n_train, cfg.scene))


@pytest.mark.slow
def test_training_from_a_pool_is_seeded(tmp_path):
    cfg = OrganismConfig(**{**TINY, "n_train": 300, "data": "pool"})
    s1 = train(cfg, tmp_path / "m1", device="cpu", log=lambda m: None, pool_dir=tmp_path / "pool")
    assert (tmp_path / "pool" / "pixels.npy").is_file()  # built by the first run, loaded by the second
    s2 = train(cfg, tmp_path / "m2", device="cpu", log=lambda m: None, pool_dir=tmp_path / "pool")
    assert [p["loss"] for p in s1["curve"]] == [p["loss"] for p in s2["curve"]] and s1["eval"] == s2["eval"]


def test_image_spread_reads_a_collapsed_vision_tower_as_zero(tmp_path):
    """The plateau diagnostic: projected image tokens that are all one vector give spread 0 (hand case:
    projector output = its bias); a fresh tower gives clearly distinct tokens."""
    from workbench.lab.data import encode
    from workbench.lab.train import image_spread

    cfg = OrganismConfig(**TINY)
    model, _, proc = build(cfg, tmp_path / "m")
    data = encode(proc, eval_probes(0, cfg).filter(lambda it: it.task == "color"))
    fresh = image_spread(model, data, torch.device("cpu"), n=16)
    proj = model.model.multi_modal_projector.linear_2
    with torch.no_grad():
        proj.weight.zero_()
        proj.bias.fill_(0.5)
    assert fresh > 0.05 and image_spread(model, data, torch.device("cpu"), n=16) == 0.0


def test_patch_labels_mark_the_tokens_under_each_object():
    """Hand case: on a 64 px canvas a red circle centred at (40, 8) lies in 16 px patch (row 0, col 2) = token 2
    and in 8 px patch (row 1, col 5) = token 13; a blue square at (8, 56) in tokens 12 and 57; the rest are 0."""
    from workbench.lab.data import Encoded, object_table
    from workbench.probes.scenes import PALETTE, SHAPES, Scene, SceneObject

    scene = Scene(64, (SceneObject("red", "circle", 40, 8, 14), SceneObject("blue", "square", 8, 56, 14)), 0, 1)
    objects = object_table([scene])
    assert objects.tolist() == [[[list(PALETTE).index("red"), SHAPES.index("circle"), 40, 8],
                                 [list(PALETTE).index("blue"), SHAPES.index("square"), 8, 56], [-1, -1, -1, -1]]]
    z = torch.zeros(1, 1, dtype=torch.long)
    data = Encoded(z, z, torch.zeros(1, 64, 64, 3, dtype=torch.uint8), torch.zeros(3), torch.ones(3), z, z[0], z[0], ["color"],
                   objects)
    for patch, red, blue in ((16, 2, 12), (8, 13, 57)):
        color, shape = data.patch_labels(torch.tensor([0]), patch)
        want_c, want_s = (torch.zeros(1, (64 // patch) ** 2, dtype=torch.long),
                          torch.zeros(1, (64 // patch) ** 2, dtype=torch.long))
        want_c[0, red], want_s[0, red] = list(PALETTE).index("red") + 1, SHAPES.index("circle") + 1
        want_c[0, blue], want_s[0, blue] = list(PALETTE).index("blue") + 1, SHAPES.index("square") + 1
        assert torch.equal(color, want_c) and torch.equal(shape, want_s)
    # reach 7 px at 8 px patches (patch centres 3.5, 11.5, …): red → rows 0-1 × cols 4-5, blue → rows 6-7 × cols 0-1;
    # a green triangle at (16, 56) → rows 6-7 × cols 1-2, and as the later object it takes the tokens it shares with blue
    three = Scene(64, scene.objects + (SceneObject("green", "triangle", 16, 56, 14),), 0, 1)
    data3 = Encoded(z, z, data.pixels, torch.zeros(3), torch.ones(3), z, z[0], z[0], ["color"], object_table([three]))
    color, shape = data3.patch_labels(torch.tensor([0]), 8, reach=7)
    want_c, want_s = torch.zeros(1, 64, dtype=torch.long), torch.zeros(1, 64, dtype=torch.long)
    for (c, sh), tokens in ((("red", "circle"), (4, 5, 12, 13)), (("blue", "square"), (48, 56)),
                            (("green", "triangle"), (49, 50, 57, 58))):
        want_c[0, list(tokens)], want_s[0, list(tokens)] = list(PALETTE).index(c) + 1, SHAPES.index(sh) + 1
    assert torch.equal(color, want_c) and torch.equal(shape, want_s)
    # 3 < 3.5: centre only
    assert torch.equal(data.patch_labels(torch.tensor([0]), 8, reach=3)[0], data.patch_labels(torch.tensor([0]), 8)[0])
    with pytest.raises(WorkbenchError, match="carry no object tables"):
        Encoded(z, z, data.pixels, torch.zeros(3), torch.ones(3), z, z[0], z[0], ["color"]).patch_labels(torch.tensor([0]), 16)


@pytest.mark.slow
def test_patch_loss_trains_the_vision_tower_and_is_checkpointed(tmp_path):
    """The auxiliary read-out reads the projector's output (its hook fires) and its gradient reaches the vision
    tower: the same seed with and without it gives different towers; its state travels in the checkpoint."""
    from safetensors.torch import load_file

    plain = OrganismConfig(**TINY)
    aux = OrganismConfig(**{**TINY, "patch_loss": 1.0})
    train(plain, tmp_path / "plain", device="cpu", log=lambda m: None)
    train(aux, tmp_path / "aux", device="cpu", log=lambda m: None, checkpoint=tmp_path / "aux.pt")
    a, b = load_file(tmp_path / "plain" / "model.safetensors"), load_file(tmp_path / "aux" / "model.safetensors")
    tower = [k for k in a if "vision_tower" in k and k.endswith("weight")]
    assert tower and any(not torch.equal(a[k], b[k]) for k in tower)
    state = load_checkpoint(tmp_path / "aux.pt")
    assert set(state["readout"]) == {f"{h}.{p}" for h in ("color", "shape", "row", "col") for p in ("weight", "bias")}
    assert state["where"] is None
    assert not any("readout" in k or "color." in k for k in b)  # the shipped model is a plain LLaVA
    # the language model's read-out (where_loss) reads layer 0's output: its gradient reaches layer 0, not layer 1's MLP ...
    where = OrganismConfig(**{**TINY, "where_loss": 1.0, "where_layer": 0})
    train(where, tmp_path / "where", device="cpu", log=lambda m: None, checkpoint=tmp_path / "where.pt")
    w = load_file(tmp_path / "where" / "model.safetensors")
    changed = {k for k in a if not torch.equal(a[k], w[k])}
    assert any(".layers.0." in k and "language_model" in k for k in changed)
    assert set(load_checkpoint(tmp_path / "where.pt")["where"]) == {"heads.weight", "heads.bias"}
    assert not any("heads." in k for k in w)


def test_init_starts_from_the_given_folder_and_refuses_another_architecture(tmp_path):
    """A staged recipe's later stage starts from the earlier stage's weights, tensor for tensor, whatever the seed."""
    torch.manual_seed(1)
    src, _, _ = build(OrganismConfig(**TINY), tmp_path / "src")
    torch.manual_seed(2)
    fresh, _, _ = build(OrganismConfig(**TINY), tmp_path / "fresh")
    torch.manual_seed(2)
    started, _, _ = build(OrganismConfig(**TINY, init=str(tmp_path / "src")), tmp_path / "started")
    want, other = src.state_dict(), fresh.state_dict()
    assert all(torch.equal(v, want[k]) for k, v in started.state_dict().items())
    assert not all(torch.equal(v, other[k]) for k, v in started.state_dict().items())
    with pytest.raises(WorkbenchError, match="do not fit this config's architecture"):
        build(OrganismConfig(**{**TINY, "layers": 3}, init=str(tmp_path / "src")), tmp_path / "deeper")
    with pytest.raises(WorkbenchError, match="has no model.safetensors"):
        build(OrganismConfig(**TINY, init=str(tmp_path / "nowhere")), tmp_path / "none")
    r = CliRunner().invoke(app, ["lab", "train", "--out", str(tmp_path / "o"), "--init", str(tmp_path / "nowhere")])
    assert r.exit_code != 0 and "has no model.safetensors" in r.output and not (tmp_path / "o").exists()


def test_named_cells_are_the_rows_and_columns_of_the_two_objects_a_spatial_question_names(tmp_path):
    """Oracle: the scenes themselves (A = scene.a, B = scene.b, named in that order by relation and verify questions)."""
    from workbench.lab.data import color_token_table, encode
    from workbench.probes.scenes import Scene

    cfg = OrganismConfig(**{**TINY, "grid": 16, "object_size": 14, "patch": 16})
    _, tok, processor = build(cfg, tmp_path / "m")
    probes = eval_probes(0, cfg)
    data = encode(processor, probes)
    cells = data.named_cells(torch.arange(len(probes)), 16, color_token_table(tok))
    want = []
    for it in probes:
        s = Scene.from_json(it.scene)
        want.append([s.a.y // 16, s.a.x // 16, s.b.y // 16, s.b.x // 16] if it.task in ("relation", "verify") else [-1] * 4)
    assert (cells.tolist() == want
            and sum(w[0] >= 0 for w in want) == sum(it.task in ("relation", "verify") for it in probes) > 100)


@pytest.mark.slow
def test_label_smoothing_is_the_answer_loss_of_the_first_step(tmp_path):
    """Oracle: the first step's logged loss is the answer loss of the initial model on the first batch,
    (1 − ε)·CE + ε·mean over the vocabulary of −log p, computed here by hand from the same seeded model and batch."""
    from workbench.lab.data import encode

    eps = 0.3
    cfg = OrganismConfig(**{**TINY, "steps": 1, "eval_every": 1})
    torch.manual_seed(cfg.seed)
    model, _, processor = build(cfg, tmp_path / "init")  # train() builds the same model: same seed, nothing drawn before
    data = encode(processor, train_probes(cfg))
    idx = torch.randperm(len(data.tasks), generator=torch.Generator().manual_seed(cfg.seed))[:cfg.batch]  # train()'s first batch
    with torch.no_grad():
        logp = model.train()(**data.batch(idx, torch.device("cpu")), logits_to_keep=1).logits[:, -1].float().log_softmax(-1)
    ce = -logp.gather(1, data.answer_token[idx, None]).mean()
    smoothed = (1 - eps) * ce - eps * logp.mean(1).mean()
    plain = train(cfg, tmp_path / "a", device="cpu", log=lambda m: None)["curve"][0]["loss"]
    ls = train(replace(cfg, label_smoothing=eps), tmp_path / "b", device="cpu", log=lambda m: None)["curve"][0]["loss"]
    assert plain == pytest.approx(float(ce), rel=1e-5) and ls == pytest.approx(float(smoothed), rel=1e-5)
    assert abs(ls - plain) > 1e-3  # the two losses differ, so the check above tells them apart


class _FixedLogits(torch.nn.Module):
    """A stand-in model whose last-position logits are given: ``[n, vocab]``, rows picked by the batch's item ids."""

    def __init__(self, logits):
        super().__init__()
        self.logits = logits

    def forward(self, item, logits_to_keep=1):
        return type("Out", (), {"logits": self.logits[item][:, None]})()


class _Items:
    def __init__(self, answers):
        self.tasks, self.answer_token = ["color"] * len(answers), answers

    def batch(self, idx, device):
        return {"item": idx}


def test_answer_temperature_solves_the_confidence_equation():
    """Hand-computed oracle: logits 0 everywhere but m on the right answer give p = e^{Tm} / (e^{Tm} + V − 1), so the
    temperature for a target p* is ln(p*·(V − 1) / (1 − p*)) / m."""
    from workbench.lab.calibration import answer_temperature

    n, vocab, m = 12, 55, 2.0
    answers = torch.arange(n) % vocab
    logits = torch.zeros(n, vocab)
    logits[torch.arange(n), answers] = m
    items, model = _Items(answers), _FixedLogits(logits)
    for target in (0.5, 0.9, 0.999):
        want = math.log(target * (vocab - 1) / (1 - target)) / m
        assert answer_temperature(model, items, target, torch.device("cpu")) == pytest.approx(want, rel=1e-6)
    p_now = math.exp(m) / (math.exp(m) + vocab - 1)  # 0.12: a target the model already meets needs no factor
    assert answer_temperature(model, items, p_now / 2, torch.device("cpu")) == 1.0
    with pytest.raises(WorkbenchError, match="no temperature"):  # a model that is wrong everywhere never gets there
        answer_temperature(_FixedLogits(-logits), items, 0.9, torch.device("cpu"))


def test_folding_a_temperature_multiplies_every_logit(llava_vlm):
    from workbench.lab.calibration import fold_temperature

    model = llava_vlm.model
    inputs = {"input_ids": torch.tensor([[5, 6, 7, 8]]), "attention_mask": torch.ones(1, 4, dtype=torch.long)}
    weight = model.lm_head.weight.detach().clone()
    try:
        before = model.model.language_model(**inputs).last_hidden_state @ weight.T
        fold_temperature(model, 2.5)
        assert torch.equal(model.lm_head.weight, weight * 2.5)
        after = model.lm_head(model.model.language_model(**inputs).last_hidden_state)
        assert torch.allclose(after, 2.5 * before, rtol=1e-5, atol=1e-6) and torch.equal(after.argmax(-1), before.argmax(-1))
    finally:
        with torch.no_grad():
            model.lm_head.weight.copy_(weight)
