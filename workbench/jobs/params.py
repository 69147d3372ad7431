"""Job parameters from what a person typed: parse, validate, and say which field is wrong.

Forms (the app's, a notebook's) hand strings and numbers here; :func:`sweep_params` and
:func:`train_params` return the plain dict a job runs on, or raise :class:`FieldError` naming the
field, so a form can put the message next to that field instead of showing a traceback. Nothing
here loads a model: a head set is checked against the shape in a model folder's ``config.json``
(:func:`heads_for_model`); what only the loaded model knows (a hub id's shape) is checked in the
job and comes back as its error line. Pointless requests are refused too: α = 1 alone
(:func:`check_not_identity`), the identity, which would run every forward pass to measure zeros.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from workbench import axis
from workbench.errors import WorkbenchError
from workbench.names import MAX_PROBES, METRICS, MODES, POSITIONS, TARGETS  # torch-free: the app's server imports this module
from workbench.probes.probeset import ProbeSet
from workbench.sweeps.spec import SweepSpec

MAX_ATTENTION_PROBES = 1024  # attention maps kept per sweep (each is [layer, head, patch] floats)
DEFAULT_PROBES = "default"  # the seeded spatial probes of the organism's held-out set
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_HEAD = re.compile(r"^(?:L(\d+)H(\d+)|(\d+):(\d+))$", re.IGNORECASE)


class FieldError(WorkbenchError):
    def __init__(self, field: str, problem: str, fix: str | None = None):
        self.field = field
        super().__init__(problem, fix)


def parse_alphas(text: str) -> tuple[float, ...]:
    """"0, 0.5,2" → (0.0, 0.5, 2.0), in the order typed.

    Which values make a sweep (finite, each once) is :class:`~workbench.sweeps.spec.SweepSpec`'s rule,
    the same for the CLI and the Python API; here it comes back as the field's message (a repeated α
    is refused, not silently dropped, so what runs is what was typed)."""
    parts = [p.strip() for p in str(text or "").replace(";", ",").split(",") if p.strip()]
    if not parts:
        raise FieldError("alphas", "no α values given", "type e.g. 0, 0.5, 2")
    out: list[float] = []
    for p in parts:
        try:
            out.append(float(p))
        except ValueError:
            raise FieldError("alphas", f"{p!r} is not a number", "type comma-separated numbers, e.g. 0, 0.5, 2") from None
    try:
        SweepSpec(alphas=tuple(out))
    except WorkbenchError as e:
        raise FieldError("alphas", e.problem, "type each finite factor once, e.g. 0, 0.5, 2") from None
    return tuple(out)


def parse_heads(text: str) -> list[list[int]]:
    """"L0H4, L2H1" (or "0:4 2:1") → [[0, 4], [2, 1]]; an empty list is an error, not "all heads"."""
    heads: list[list[int]] = []
    for token in re.split(r"[,;\s]+", str(text or "").strip()):
        if not token:
            continue
        m = _HEAD.match(token)
        if not m:
            raise FieldError("heads", f"{token!r} is not a head", "write heads as L0H4, L2H1")
        h = [int(m.group(1) or m.group(3)), int(m.group(2) or m.group(4))]
        if h not in heads:
            heads.append(h)
    if not heads:
        raise FieldError("heads", "the head set is empty", "list at least one head (L0H4, L2H1) or choose all heads")
    return heads


IDENTITY = 1.0  # α = 1 leaves a site as it is


def check_not_identity(alphas) -> None:
    """Refuse an α list that is the identity alone: scaling a site by 1 changes nothing, so every effect is 0 and
    the sweep (minutes of forward passes) would measure nothing. An α list with 1 among other factors is fine."""
    if alphas and all(float(a) == IDENTITY for a in alphas):
        raise FieldError("alphas", "α = 1 alone is the identity: every effect would be 0, so there is nothing to measure",
                         "add a factor other than 1, e.g. 0, 0.5, 2 (α = 0 ablates)")


def model_shape(model: str) -> tuple[int, int] | None:
    """``(layers, query heads)`` of a model folder, read from its ``config.json`` (the text config's
    ``num_hidden_layers`` × ``num_attention_heads``, every layer kind counted, as the loaded model's site has them),
    without loading the model. None when it cannot be known here (a hub id, an unreadable or unusual config):
    the job then checks the heads once the model is loaded."""
    folder = Path(str(model or "").strip()).expanduser()
    try:
        cfg = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return None
    text = cfg.get("text_config") if isinstance(cfg.get("text_config"), dict) else cfg
    layers, heads = text.get("num_hidden_layers"), text.get("num_attention_heads")
    if not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in (layers, heads)):
        return None
    return layers, heads


def check_heads_in_model(heads: list[list[int]], shape: tuple[int, int] | None, field: str = "heads") -> None:
    """Refuse a head set naming a head the model lacks, before a job starts; the message names the model's shape.

    ``heads``: ``[[layer, head], …]`` as :func:`parse_heads` returns them (an empty list is refused too);
    ``shape``: ``(layers, heads)`` from :func:`model_shape` (None: unknown here, nothing is checked but emptiness)."""
    if not heads:
        raise FieldError(field, "the head set is empty", "list at least one head (L0H4, L2H1) or choose all heads")
    if shape is None:
        return
    n_layers, n_heads = shape
    outside = [f"L{a}H{b}" for a, b in heads if not (0 <= a < n_layers and 0 <= b < n_heads)]
    if outside:
        verb = "is" if len(outside) == 1 else "are"
        raise FieldError(field, f"{', '.join(outside)} {verb} outside the model: it has {n_layers} layers × {n_heads} heads "
                                f"(L0H0 to L{n_layers - 1}H{n_heads - 1})",
                         f"pick heads with layer < {n_layers} and head < {n_heads}")


def heads_for_model(text: str, model: str, field: str = "heads") -> list[list[int]]:
    """A typed head set checked against the model it will run on: :func:`parse_heads`, then
    :func:`check_heads_in_model` with the folder's :func:`model_shape` (a form calls this before submitting)."""
    heads = parse_heads(text)
    check_heads_in_model(heads, model_shape(model), field)
    return heads


def _model(model: str) -> str:
    """A model folder (it must hold config.json: any other server directory is refused) or a hub id."""
    model = str(model or "").strip()
    if not model:
        raise FieldError("model", "no model given", "choose the organism or type a model folder / hub id")
    folder = Path(model).expanduser()
    if folder.is_dir():
        if not (folder / "config.json").is_file():
            raise FieldError("model", f"{model} has no config.json", "choose a Hugging Face model folder or type a hub id")
    elif model.startswith(("/", ".", "~")):
        raise FieldError("model", f"model folder {model} does not exist", "check the path")
    return model


def _probes(probes: str) -> str:
    """The default set, or a folder that loads as a probe set (files present, hash intact): the sweep job copies
    it into the store, so nothing else may pass."""
    probes = str(probes or "").strip() or DEFAULT_PROBES
    if probes != DEFAULT_PROBES:
        try:
            ProbeSet.load(Path(probes).expanduser())
        except WorkbenchError as e:
            raise FieldError("probes", f"{probes} is not a readable probe set ({e.problem})",
                             "make one with `workbench probes make`, or use the default") from None
    return probes


def _device(device: str) -> str:
    from workbench.models.devices import check_device  # asks torch which devices exist: imported only when a form is checked

    try:
        return check_device(device)
    except WorkbenchError as e:
        raise FieldError("device", e.problem, "choose cpu, or cuda on a machine with a GPU") from None


def _choice(field: str, value: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise FieldError(field, f"unknown {field} {value!r}", f"choose from: {', '.join(choices)}")
    return value


def _number(field: str, value, kind=float, low: float | None = None, high: float | None = None):
    try:
        v = kind(value)
    except (TypeError, ValueError):
        raise FieldError(field, f"{value!r} is not a{'n integer' if kind is int else ' number'}", f"type a {field}") from None
    if (low is not None and v < low) or (high is not None and v > high):
        bounds = f"between {_show(low)} and {_show(high)}" if high is not None else f"at least {_show(low)}"
        raise FieldError(field, f"{field} must be {bounds}, got {_show(v)}", f"type a {field} {bounds}")
    return v


def _show(v: float) -> str:
    """1000000 → "1,000,000"; 0.001 → "0.001"."""
    return f"{int(v):,}" if float(v).is_integer() else f"{v:g}"


def _family_fields(intervention: str, target: str, direction: str, alphas: str, metric: str, min_gap) -> dict:
    """The sweep's family fields checked as :class:`~workbench.sweeps.spec.SweepSpec` checks them, each refusal on the
    field it is about: a family on a kind it does not apply to (temperature on heads) under *target*, a missing or
    stray direction under *direction*, α given to patching (it has none) under *alphas*, another metric than the
    logit difference for patching under *metric*. Returns ``intervention``, ``direction``, ``min_gap``, ``alphas``."""
    intervention = _choice("intervention", str(intervention or "scale"), axis.INTERVENTIONS)
    fam = axis.family(intervention)
    target = _choice("target", target, TARGETS)
    if target not in fam.kinds:
        raise FieldError("target", f"the {fam.name} intervention does not apply to {axis.kind(target).title}",
                         f"choose target {' or '.join(fam.kinds)} for {fam.name}")
    direction = str(direction or "").strip() if fam.needs_pairs else ""
    if fam.needs_pairs and direction not in axis.DIRECTIONS:
        raise FieldError("direction", f"unknown direction {direction!r}" if direction else "patching needs a direction",
                         f"choose {' or '.join(axis.DIRECTIONS)}")
    gap = _number("min_gap", min_gap if min_gap not in (None, "") else 0.0, float, 0.0) if fam.needs_pairs else 0.0
    if not fam.has_alpha:
        if str(alphas or "").strip() and parse_alphas(alphas) != fam.default_alphas:
            raise FieldError("alphas", f"the {fam.name} intervention has no α (got {alphas})",
                             "leave α empty for a patching sweep: every site is fully patched")
        if metric != "logit_diff":
            raise FieldError("metric", f"patching normalises the answer-vs-foil logit difference, not {metric!r}",
                             "choose metric logit_diff for a patching sweep")
        alpha_list = fam.default_alphas
    else:
        alpha_list = parse_alphas(alphas)
        check_not_identity(alpha_list)
    try:
        SweepSpec(alphas=alpha_list, metric=metric, target=target, intervention=intervention, direction=direction,
                  min_gap=gap)
    except WorkbenchError as e:  # anything the spec refuses that the fields above did not name
        raise FieldError("intervention", e.problem, e.fix) from None
    return {"intervention": intervention, "direction": direction, "min_gap": gap, "alphas": list(alpha_list)}


def check_pairs_available(probes: str) -> None:
    """Refuse a patching sweep on probes without counterfactual partners (the default held-out spatial set has them;
    a folder is read here, without a model)."""
    if probes == DEFAULT_PROBES:
        return
    from workbench.causal.checks import check_pairs  # torch-free

    try:
        check_pairs(ProbeSet.load(Path(probes).expanduser()))
    except WorkbenchError as e:
        raise FieldError("probes", e.problem, e.fix) from None


def sweep_params(store: str, model: str, probes: str = DEFAULT_PROBES, alphas: str = "0, 0.5, 2", metric: str = "logit_diff",
                 positions: str = "last", target: str = axis.HEADS.name, attention_probes: int = 16, device: str = "cpu",
                 label: str = "", probes_per_chunk: int = 64, intervention: str = "scale", direction: str = "",
                 min_gap: float = 0.0) -> dict:
    """A sweep job's parameters. ``intervention`` (scale, patch, temperature), ``direction`` (patching: noising or
    denoising) and ``min_gap`` (patching: the smallest |source − base| logit difference normalised) are checked by
    :func:`_family_fields`; a patching sweep takes no α (leave it empty) and needs probes with counterfactuals."""
    metric = _choice("metric", metric, METRICS)
    fam = _family_fields(intervention, target, direction, alphas, metric, min_gap)
    probes = _probes(probes)
    if axis.family(fam["intervention"]).needs_pairs:
        check_pairs_available(probes)
    return {"store": str(store), "model": _model(model), "probes": probes, "alphas": fam["alphas"],
            "metric": metric, "positions": _choice("positions", positions, POSITIONS),
            "target": _choice("target", target, TARGETS), "intervention": fam["intervention"], "direction": fam["direction"],
            "min_gap": fam["min_gap"],
            "attention_probes": _number("attention_probes", attention_probes, int, 0, MAX_ATTENTION_PROBES),
            "device": _device(device),
            "label": label or (f"sweep α={alphas}" if axis.family(fam["intervention"]) is axis.SCALE else
                               f"sweep {fam['intervention']} {fam['direction'] or alphas}".strip()),
            "probes_per_chunk": _number("probes_per_chunk", probes_per_chunk, int, 1, MAX_PROBES)}


# The organism study's ScAle all-positions setting (analyses/organism_study.py, row scale-all-attn of
# analyses/results/organism_study.md): the training job's and the Train page's defaults, so a default run on the
# deficit organism is the study's run. The repair set is n_train fresh probes of every task (half spatial, half
# control), drawn as the organism draws its scenes; patience = epochs: no early stop, the best epoch is kept.
STUDY_TRAIN = {"mode": "attn", "positions": "all", "s_max": 10.0, "epochs": 15, "lr": 1e-2, "batch": 32, "n_train": 2000,
               "patience": 15, "l2": 1e-4, "seed": 0}


def train_params(store: str, model: str, name: str, probes: str = DEFAULT_PROBES, mode: str = STUDY_TRAIN["mode"],
                 heads: str | None = None, s_max: float = STUDY_TRAIN["s_max"], epochs: int = STUDY_TRAIN["epochs"],
                 lr: float = STUDY_TRAIN["lr"], batch: int = STUDY_TRAIN["batch"], positions: str = STUDY_TRAIN["positions"],
                 n_train: int = STUDY_TRAIN["n_train"], seed: int = STUDY_TRAIN["seed"], device: str = "cpu",
                 patience: int = STUDY_TRAIN["patience"], l2: float = STUDY_TRAIN["l2"]) -> dict:
    """``heads=None`` trains every head; a string must list at least one (an empty one is an error, not "all").
    Defaults: :data:`STUDY_TRAIN`."""
    name = str(name or "").strip()
    if not NAME_PATTERN.match(name):
        raise FieldError("name", f"{name!r} is not a usable vector name", "use letters, digits, '-', '_' or '.' (up to 64)")
    mode = _choice("mode", mode, MODES)
    head_list = None if heads is None else heads_for_model(heads, model)  # a head outside a model folder's shape: refused here
    if head_list is not None and mode == "mlp":
        raise FieldError("heads", "a head set was given but mode mlp trains no heads", "choose mode attn or both, or all heads")
    return {"store": str(store), "model": _model(model), "name": name, "probes": _probes(probes), "mode": mode,
            "heads": head_list,
            "s_max": _number("s_max", s_max, float, 1e-3, 100), "epochs": _number("epochs", epochs, int, 1, 1000),
            "lr": _number("lr", lr, float, 1e-6, 1.0), "batch": _number("batch", batch, int, 1, 4096),
            "positions": _choice("positions", positions, POSITIONS), "n_train": _number("n_train", n_train, int, 10, MAX_PROBES),
            "seed": _number("seed", seed, int, 0), "device": _device(device), "label": f"train {name}",
            "patience": _number("patience", patience, int, 1, 1000), "l2": _number("l2", l2, float, 0, 1.0)}
