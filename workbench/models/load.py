"""Load a VLM (local folder or hub id), wrap it for nnsight, resolve its sites, fingerprint it.

:func:`load_vlm` returns a :class:`VLM`: the Hugging Face model, its processor, the checked
:class:`~workbench.models.sites.Site` (where heads and MLPs live, and their counts) and an
nnsight wrapper for interventions. :func:`wrap_vlm` does the same for a model already in memory
(the tests' tiny random configs, a model you built yourself). Both put the model in eval mode and
freeze its weights (``requires_grad=False``): the workbench only ever trains scales and adapters.

Hub ids need the network. Without it (or with ``HF_HUB_OFFLINE=1``) a hub id that is not in the
local cache fails at once with a message saying so. A short HTTP request to the hub decides (not
just a TCP connection: an endpoint that accepts and never answers must fail too), and while a model
loads every request huggingface_hub makes gets a timeout (:func:`bounded_hub_client`; its own client
has none on calls such as ``model_info``), so neither a closed network nor a silent one makes this
hang. ``trust_remote_code`` stays off unless asked for. The device is checked before anything loads
(:func:`~workbench.models.devices.check_device`): ``cuda`` on a machine without it is one line, not a traceback.

The processor is built here (:func:`load_processor`) and handed to nnsight's ``TransformersModel``,
which would otherwise call ``AutoProcessor`` itself: without torchvision, the processors whose video part
is a torchvision class (Qwen2-VL, Qwen2.5-VL, Qwen3-VL, LLaVA-OneVision, InternVL, SmolVLM) load in their
image-only form, the same class without its video processor, and one stderr line says so; with
torchvision installed ``AutoProcessor`` is used as is (not exercised in this environment). An architecture
with no row in the sites table is refused from the folder's config.json before anything loads.

The **fingerprint** identifies a model by its config and weights: sha256 over the config JSON and,
for every state-dict entry in name order, the sha256 of its name, shape, dtype and every byte of
its values (bf16 as its raw bytes, not converted). It is what every stored result and exported file
carries, so any weight edit, down to one bit of one value, changes it; a sample would not (scaling one
head's columns of a 4096-wide projection by 0.1 left a 4,096-value sample unchanged). Tensors are
hashed in a few threads (hashlib releases the GIL), GPU tensors copied to the host in slabs; a 7B
model in bf16 takes seconds on a few cores (``analyses/results/bench_fingerprint.txt``).
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import os
import re
import types
import urllib.error
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch

from workbench.errors import WorkbenchError
from workbench.models.devices import check_device
from workbench.models.sites import Site, resolve_site, site_row

_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")
DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
          "float16": torch.float16, "fp16": torch.float16}


@dataclass(eq=False)
class VLM:
    """A loaded vision-language model and everything interventions need to know about it."""

    model: torch.nn.Module  # the transformers model (…ForConditionalGeneration), eval mode
    processor: Any | None  # its processor (None for bare in-memory models)
    site: Site
    nn: Any  # nnsight wrapper (TransformersModel or NNsight) over ``model``
    name: str
    source: str | None = None  # the folder or hub id it was loaded from (None for in-memory models)
    _fingerprint: str | None = field(default=None, repr=False)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @property
    def fingerprint(self) -> str:
        if self._fingerprint is None:
            self._fingerprint = fingerprint(self.model)
        return self._fingerprint


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    try:
        return DTYPES[dtype]
    except KeyError:
        raise WorkbenchError(f"unknown dtype {dtype!r}", f"choose from: {', '.join(DTYPES)}") from None


def wrap_vlm(model: torch.nn.Module, processor: Any | None = None, name: str | None = None) -> VLM:
    """Wrap a model already in memory (checked against the sites table)."""
    from nnsight import NNsight

    site = resolve_site(model)
    model.eval().requires_grad_(False)
    return VLM(model=model, processor=processor, site=site, nn=NNsight(model), name=name or _model_name(model))


def load_vlm(id_or_path: str | os.PathLike, device: str = "cpu", dtype: str | torch.dtype = "float32",
             trust_remote_code: bool = False, attn_implementation: str | None = None) -> VLM:
    """Load an image-text-to-text model and its processor from a local folder or a hub id."""
    from nnsight.modeling.transformers import TransformersModel

    device = check_device(device)
    resolve_dtype(dtype)
    source, offline = str(id_or_path), False
    local = Path(source).expanduser()
    if local.is_dir():
        if not (local / "config.json").is_file():
            raise WorkbenchError(f"{local} has no config.json", "point at a Hugging Face model folder")
        source = str(local)
        _check_architecture(local / "config.json")
    elif not local.exists() and source.startswith((".", "/", "~")):
        raise WorkbenchError(f"model folder {source} does not exist",
                             "check the path (the default organism is built with `workbench lab train`)")
    elif local.exists() or not _HUB_ID.match(source):
        raise WorkbenchError(f"model {source!r} is neither a model folder nor a hub id",
                             "pass a folder with config.json or an id like org/name")
    elif _cached(source):
        offline = _offline() or _hub_problem(source) is not None  # a silent hub: the cache is all this load needs
    else:
        _require_hub(source)
    kwargs: dict[str, Any] = dict(task="image-text-to-text", dispatch=True, dtype=resolve_dtype(dtype), device_map=device,
                                  trust_remote_code=trust_remote_code)
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    try:
        with bounded_hub_client(offline=offline):
            kwargs["processor"] = load_processor(source, trust_remote_code)  # nnsight would call AutoProcessor itself
            nn = TransformersModel(source, **kwargs)
    except (OSError, ValueError, KeyError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise WorkbenchError(f"could not load {source!r}: {msg}",
                             "check that it is an image-text-to-text model folder or hub id") from e
    model = nn._module
    model.eval().requires_grad_(False)
    return VLM(model=model, processor=nn.processor, site=resolve_site(model), nn=nn, name=_model_name(model, source),
               source=source)


def _check_architecture(config_json: Path) -> None:
    """An architecture with no row in the sites table fails here, in one line, before any weight or processor loads."""
    try:
        model_type = json.loads(config_json.read_text()).get("model_type")
    except (OSError, ValueError, AttributeError):
        return  # an unreadable config is reported by the load itself
    if model_type:
        site_row(model_type)


def torchvision_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("torchvision") is not None


class VideoUnavailable:
    """Stands where a processor's video processor would be when torchvision is missing.

    Reading any of its settings gives None (SmolVLM's ``apply_chat_template`` reads ``num_frames`` and ``fps`` even
    for an image-only conversation); processing a video with it is one error naming the fix."""

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        return None

    def __call__(self, *args, **kwargs):
        raise WorkbenchError("video inputs need torchvision, which is not installed", "pip install torchvision")

    def __repr__(self) -> str:
        return "VideoUnavailable()"


@functools.lru_cache(maxsize=None)
def image_only_processor_class(cls: type) -> type:
    """``cls`` itself, or — when torchvision is absent and ``cls`` has a video processor — its image-only form.

    A ``ProcessorMixin`` subclass takes its sub-processors from its ``__init__`` signature (``get_attributes``);
    the video processors of Qwen2-VL, Qwen2.5-VL, SmolVLM, … are torchvision classes, so without torchvision
    ``from_pretrained`` stops at an ImportError before any image is processed. The image-only form is a subclass
    with the same name that lists every sub-processor except the video ones (its ``video_processor`` is a
    :class:`VideoUnavailable`),
    so ``from_pretrained`` loads the tokenizer, the (PIL) image processor and the chat template as usual and
    ``processor(text=…, images=…)`` behaves exactly as the ordinary one; only ``videos=`` is unavailable.
    With torchvision installed the ordinary class is returned (that path is not exercised here: no CPU
    torchvision build exists for this environment)."""
    attrs = cls.get_attributes()
    video = [a for a in attrs if "video" in a]
    if not video or torchvision_available():
        return cls
    image_attrs = [a for a in attrs if a not in video]
    body: dict[str, Any] = {}
    init = cls.__init__
    positional = [p.name for p in inspect.signature(init).parameters.values() if p.kind is p.POSITIONAL_OR_KEYWORD]
    first = min((positional.index(a) for a in video if a in positional), default=None)
    if first is not None and inspect.signature(init).parameters[positional[first]].default is inspect.Parameter.empty:
        # the same function with a None default from the first video argument on (SmolVLM's requires one); the same
        # code object, because from_pretrained reads the accepted keywords from ``__init__.__code__``
        params = inspect.signature(init).parameters
        defaults = tuple(None if params[n].default is inspect.Parameter.empty else params[n].default for n in positional[first:])
        body["__init__"] = types.FunctionType(init.__code__, init.__globals__, init.__name__, defaults, init.__closure__)
        body["__init__"].__kwdefaults__ = init.__kwdefaults__
    return type(cls.__name__, (cls,), {"__module__": cls.__module__, "__doc__": cls.__doc__, **body,
                                       **{a: VideoUnavailable() for a in video},
                                       "get_attributes": classmethod(lambda c: list(image_attrs))})


_WARNED: set[str] = set()


def _processor_class_name(source: str) -> str | None:
    """The processor class a folder names (processor_config.json, else tokenizer_config.json), else the config's default."""
    for name in ("processor_config.json", "tokenizer_config.json", "preprocessor_config.json"):
        path = Path(source) / name
        if path.is_file():
            try:
                found = json.loads(path.read_text()).get("processor_class")
            except (OSError, ValueError):
                found = None
            if found:
                return found
    try:
        from transformers import AutoConfig
        from transformers.models.auto.processing_auto import PROCESSOR_MAPPING_NAMES

        return PROCESSOR_MAPPING_NAMES.get(AutoConfig.from_pretrained(source).model_type)
    except Exception:  # an unreadable config is reported by the model load that follows
        return None


def load_processor(source: str, trust_remote_code: bool = False):
    """The processor of a folder or cached hub id: ``AutoProcessor``, or its image-only form without torchvision.

    Where the family's video processor needs torchvision and it is absent, the processor class is rebuilt by
    :func:`image_only_processor_class` and one line says so on stderr (once per family); a processor that needs
    another missing package (e.g. ``num2words`` for SmolVLM) is one :class:`WorkbenchError` naming it.

    A model folder whose processor cannot be built is one :class:`WorkbenchError` too, naming the folder and the file to
    repair: a processor/preprocessor/tokenizer config that is not valid JSON (transformers raises ``OSError``) or names an
    image processor it does not know (``ValueError``), and a ``processor_class`` that transformers lacks — there
    ``AutoProcessor`` silently returns the bare tokenizer, which would fail only later, at the first image."""
    import sys

    import transformers
    from transformers import AutoProcessor, ProcessorMixin

    folder = Path(source).is_dir()
    fix = (f"repair or re-download the processor files of {source!r} (processor_config.json / preprocessor_config.json, "
           "tokenizer_config.json) from the model's hub page")
    try:
        processor = AutoProcessor.from_pretrained(source, trust_remote_code=trust_remote_code)
    except ImportError as e:
        err = e
    except (OSError, ValueError) as e:
        if not folder or "trust_remote_code" in str(e):  # a hub id's download, or custom code: load_vlm reports those as before
            raise
        raise WorkbenchError(f"the processor of {source!r} could not be built: "
                             f"{(str(e).strip().splitlines() or [type(e).__name__])[0][:200]}",
                             fix) from e
    else:
        named = _processor_class_name(source) if folder else None
        if not isinstance(processor, ProcessorMixin) and named and getattr(transformers, named, None) is None:
            raise WorkbenchError(f"the processor of {source!r} could not be built: its processor config names processor class "
                                 f"{named!r}, which transformers {transformers.__version__} does not have", fix)
        return processor
    msg = str(err)
    name = _processor_class_name(source)
    cls = getattr(transformers, name, None) if name else None
    if "torchvision" in msg.lower() and cls is not None and image_only_processor_class(cls) is not cls:
        try:
            processor = image_only_processor_class(cls).from_pretrained(source, trust_remote_code=trust_remote_code)
        except ImportError as e2:
            err, msg = e2, str(e2)
        except (OSError, ValueError) as e2:
            if not folder or "trust_remote_code" in str(e2):
                raise
            raise WorkbenchError(f"the processor of {source!r} could not be built: "
                                 f"{(str(e2).strip().splitlines() or [type(e2).__name__])[0][:200]}",
                                 fix) from e2
        else:
            if name not in _WARNED:
                _WARNED.add(name)
                print(f"torchvision is not installed: {name} loads its image processor only; video inputs are unavailable",
                      file=sys.stderr)
            return processor
    missing = re.findall(r"`?pip install ([A-Za-z0-9_.\-]+)`?", msg) or re.findall(r"requires the (\w+) library", msg)
    package = missing[0] if missing else "the package it names"
    raise WorkbenchError(f"the processor of {source!r} ({name or 'unknown class'}) needs {package}, which is not installed: "
                         f"{msg.strip().splitlines()[0][:160]}",
                         f"pip install {package}" if missing else "install the package named above") from err


def _model_name(model: torch.nn.Module, source: str | None = None) -> str:
    if source:
        return Path(source).name if Path(source).is_dir() else source
    return str(getattr(model.config, "name_or_path", "") or type(model).__name__)


def _cached(repo_id: str) -> bool:
    """True when the hub id's config is in the local Hugging Face cache."""
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
    except Exception:  # an unusual cache layout only means "not cached"
        return False


PROBE_TIMEOUT = 3.0  # seconds the hub has to answer the probe of an uncached model
HUB_TIMEOUT = 10.0  # seconds for each phase (connect, read, write, pool) of any hub request while a model loads


def _require_hub(repo_id: str, timeout: float = PROBE_TIMEOUT) -> None:
    """Fail at once, with the fix, when the hub cannot be reached or does not answer (never hang)."""
    if _offline():
        raise WorkbenchError(f"model {repo_id!r} is not in the local cache and HF_HUB_OFFLINE is set",
                             "download it where the hub is reachable and pass its folder")
    problem = _hub_problem(repo_id, timeout)
    if problem:
        raise WorkbenchError(problem, "download the model where the hub is reachable and pass its local folder")


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


def _hub_problem(repo_id: str, timeout: float = PROBE_TIMEOUT) -> str | None:
    """None when the hub answers; else the one-line problem of a model that needs it.

    The probe is a real HTTP request (``HEAD {HF_ENDPOINT}/api/models/{repo_id}``) with a timeout on
    the connection and on the answer, not just a TCP connection: an endpoint that accepts and never
    answers fails too. Any HTTP status counts as an answer (loading then says what a 404 or 401 means)."""
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
    try:
        urllib.request.urlopen(urllib.request.Request(f"{endpoint}/api/models/{repo_id}", method="HEAD"), timeout=timeout).close()
    except urllib.error.HTTPError:
        return None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        if isinstance(reason, TimeoutError):
            return f"model {repo_id!r} is not cached and the Hugging Face hub at {endpoint} did not answer within {timeout:g} s"
        url = urlparse(endpoint)
        where = f"{url.hostname}:{url.port or (80 if url.scheme == 'http' else 443)}"
        return (f"model {repo_id!r} needs the Hugging Face hub, which is unreachable "
                f"({where}: {getattr(reason, 'strerror', None) or reason})")
    return None


def _bound_timeout(request, timeout: float) -> None:
    """httpx request hook: every phase the caller left unbounded (``None``) gets ``timeout`` seconds."""
    given = dict(request.extensions.get("timeout") or {})
    request.extensions["timeout"] = {k: timeout if given.get(k) is None else given[k]
                                     for k in ("connect", "read", "write", "pool")}


@contextmanager
def bounded_hub_client(timeout: float = HUB_TIMEOUT, offline: bool = False):
    """While inside, huggingface_hub's shared HTTP client gives every request a timeout; ``offline``: makes no request.

    Its default client is built with ``timeout=None`` and some calls pass none (``model_info``, which
    transformers calls to resolve a revision), so a hub that accepts and never answers would hold a
    load forever. Downloads and etag checks keep their own timeouts (``HF_HUB_DOWNLOAD_TIMEOUT``,
    ``HF_HUB_ETAG_TIMEOUT``), but retried for every file of a cached model they still add up to
    minutes: ``offline=True`` (a cached model, a silent hub) loads from the cache alone, as
    ``HF_HUB_OFFLINE=1`` would (the flag huggingface_hub read at import is set for the call). A client
    factory someone else installed is left alone; everything is put back on the way out."""
    from huggingface_hub import constants

    try:  # the client-factory hook of the httpx-based huggingface_hub (tested: 2.4); without it, only the offline flag applies
        from huggingface_hub import set_client_factory
        from huggingface_hub.utils import _http

        ours = getattr(_http, "_GLOBAL_CLIENT_FACTORY", None) is _http.default_client_factory
    except (ImportError, AttributeError):
        ours = False
    was_offline = constants.HF_HUB_OFFLINE

    def factory():
        client = _http.default_client_factory()
        hooks = client.event_hooks
        hooks["request"] = [*hooks.get("request", []), functools.partial(_bound_timeout, timeout=timeout)]
        client.event_hooks = hooks
        return client

    constants.HF_HUB_OFFLINE = was_offline or offline
    if ours:
        set_client_factory(factory)
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = was_offline
        if ours:
            set_client_factory(_http.default_client_factory)


SLAB_BYTES = 64 << 20  # a GPU tensor reaches the host (and the hash) in slabs of this size


def tensor_digest(name: str, t: torch.Tensor) -> bytes:
    """sha256 of one state-dict entry: its name, shape and dtype, then its values' raw bytes in row-major
    order (``view(torch.uint8)``, so bf16 or fp16 values are hashed exactly as stored, never rounded or
    widened). The bytes go in :data:`SLAB_BYTES` at a time: views of a host tensor (no copy), copies of a
    GPU one (a slab at a time, never the whole tensor); the digest does not depend on the slab size."""
    h = hashlib.sha256(f"{name}|{tuple(t.shape)}|{t.dtype}\0".encode())
    flat = t.detach().contiguous().reshape(-1).view(torch.uint8)
    for i in range(0, flat.numel(), SLAB_BYTES):
        h.update(flat[i:i + SLAB_BYTES].cpu().numpy())
    return h.digest()


VOLATILE_CONFIG = ("_name_or_path", "transformers_version", "_attn_implementation_autoset", "_commit_hash", "architectures")


def config_bytes(model: torch.nn.Module) -> bytes:
    """The model's config as sorted JSON, without the fields that change when the same weights are saved or
    loaded elsewhere (:data:`VOLATILE_CONFIG`); empty for a module without a config."""
    config = getattr(model, "config", None)
    if config is None:
        return b""
    d = {k: v for k, v in config.to_dict().items() if k not in VOLATILE_CONFIG}
    return json.dumps(d, sort_keys=True, default=str).encode()


def fingerprint(model: torch.nn.Module, threads: int | None = None) -> str:
    """sha256 of the config (without its volatile fields) and of :func:`tensor_digest` of every state-dict
    entry, in name order. Entries are hashed by ``threads`` threads (default: up to 8, one per core); the
    result does not depend on the number."""
    from concurrent.futures import ThreadPoolExecutor

    h = hashlib.sha256(config_bytes(model))
    entries = sorted(model.state_dict().items())
    workers = max(1, threads or min(8, os.cpu_count() or 1))
    with torch.no_grad(), ThreadPoolExecutor(max_workers=workers) as pool:
        for digest in pool.map(lambda kv: tensor_digest(*kv), entries):
            h.update(digest)
    return h.hexdigest()


# ---------------------------------------------------------------- identity without building the model
WEIGHT_FILES = (".safetensors", ".bin", ".pt", ".pth", ".gguf", ".index.json")
IDENTITY_DIR = "models"  # <store>/models/<folder digest>.json: what a load of that folder gave (fingerprint, shape …)


def folder_digest(folder: str | os.PathLike) -> str:
    """sha256 over a model folder's ``config.json`` and weight files (:data:`WEIGHT_FILES`), each as its name and
    the sha256 of every byte: what :func:`fingerprint` depends on, read from disk without building the model
    (a few ms for the organism; the weights' size over the disk's speed for a large model)."""
    folder = Path(folder)
    h = hashlib.sha256()
    for p in sorted(folder.iterdir()):
        if p.is_file() and (p.name == "config.json" or p.name.endswith(WEIGHT_FILES)):
            f = hashlib.sha256()
            with open(p, "rb") as fh:
                while block := fh.read(16 << 20):
                    f.update(block)
            h.update(p.name.encode() + b"\0" + f.digest())
    return h.hexdigest()


def _identity_path(store_root: str | os.PathLike, digest: str) -> Path:
    return Path(store_root) / IDENTITY_DIR / f"{digest}.json"


def remember_identity(store_root: str | os.PathLike, vlm: VLM, dtype: str) -> Path | None:
    """Record, under the store, what loading ``vlm``'s folder in ``dtype`` gave (name, fingerprint, family, shape),
    keyed by :func:`folder_digest`; :func:`known_identity` reads it back. None for a model not loaded from a folder."""
    from workbench.fileio import atomic_write

    if not vlm.source or not Path(vlm.source).is_dir():
        return None
    digest = folder_digest(vlm.source)
    path = _identity_path(store_root, digest)
    try:
        known = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        known = {}
    known = known if isinstance(known, dict) else {}
    known[str(resolve_dtype(dtype))] = {"name": vlm.name, "fingerprint": vlm.fingerprint, "family": vlm.site.row.family,
                                        "shape": list(vlm.site.shape)}
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(known, indent=1, sort_keys=True)))


def known_identity(store_root: str | os.PathLike, folder: str | os.PathLike, dtype: str) -> dict | None:
    """``{"name", "fingerprint", "family", "shape"}`` of the model in ``folder`` loaded in ``dtype``, from an earlier
    load's record (:func:`remember_identity`) whose folder had these exact bytes; None when there is none (or it
    is unreadable): then only loading the model tells."""
    folder = Path(folder).expanduser()
    if not (folder / "config.json").is_file():
        return None
    path = _identity_path(store_root, folder_digest(folder))
    try:
        rec = json.loads(path.read_text()).get(str(resolve_dtype(dtype)))
    except (OSError, ValueError, AttributeError):
        return None
    ok = isinstance(rec, dict) and isinstance(rec.get("fingerprint"), str) and isinstance(rec.get("shape"), list)
    return rec if ok else None
