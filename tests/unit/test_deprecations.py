"""The suite fails on a deprecation from transformers, nnsight or TransformerLens (pyproject's filterwarnings).

Each case issues a warning attributed to a module by name (``warnings.warn_explicit``), as the library's own
``warnings.warn`` would, and checks what the filters in force during every test do with it: an error for the
model libraries and for our code calling them, a plain warning elsewhere, silence for the known third-party ones."""

import warnings

import pytest


def _warn(category, message: str, module: str) -> None:
    warnings.warn_explicit(message, category, filename=module.replace(".", "/") + ".py", lineno=1, module=module)


@pytest.mark.parametrize("module", ["transformers.modeling_utils", "transformers", "nnsight.intervention.envoy",
                                    "transformer_lens.model_bridge", "workbench.sweeps.packed"])
@pytest.mark.parametrize("category", [DeprecationWarning, FutureWarning])
def test_a_deprecation_from_a_model_library_is_an_error(module, category):
    with pytest.raises(category, match="`past_key_values` is deprecated"):
        _warn(category, "`past_key_values` is deprecated and will be removed in v5.40; use `cache`", module)


@pytest.mark.parametrize("module", ["numpy.core", "transformers_stream_generator", "nnsightful"])
def test_other_modules_only_warn(module):
    with warnings.catch_warnings(record=True) as caught:
        _warn(DeprecationWarning, "old", module)
    assert [str(w.message) for w in caught] == ["old"]


def test_a_user_warning_from_transformers_is_not_an_error():
    with warnings.catch_warnings(record=True) as caught:
        _warn(UserWarning, "a hint", "transformers.generation")
    assert [str(w.message) for w in caught] == ["a hint"]


@pytest.mark.parametrize("category,message,module", [
    (FutureWarning, "`is_gradient_checkpointing` is deprecated and will be removed in v6.", "transformers.modeling_utils"),
    (DeprecationWarning, "__array__ implementation doesn't accept a copy keyword, so passing copy=False failed.",
     "transformers.models.paligemma.processing_paligemma"),
])
def test_the_known_third_party_warnings_are_silenced(category, message, module):
    with warnings.catch_warnings(record=True) as caught:
        _warn(category, message, module)
    assert caught == []
