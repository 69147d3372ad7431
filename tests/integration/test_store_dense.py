"""The store's dense copy of a complete sweep (``dense.npz``): the same numbers as the chunks, used only while it
matches them, and never a way around a corrupt chunk.

Sweeps come from ``test_store_faults.build``: value = 100·layer + 10·head + probe + α, so every cell is known.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tests.integration.test_store_faults import N_HEADS, N_LAYERS, N_PROBES, SPEC, _frame, build, chunk_path
from workbench.store.effects import DENSE_FILE, CorruptChunk, EffectStore


def expected() -> np.ndarray:
    """``[probe, alpha, layer, head]`` by hand from the builder's rule."""
    out = np.zeros((N_PROBES, len(SPEC["alphas"]), N_LAYERS, N_HEADS))
    for p in range(N_PROBES):
        for i, a in enumerate(SPEC["alphas"]):
            for la in range(N_LAYERS):
                for h in range(N_HEADS):
                    out[p, i, la, h] = 100 * la + 10 * h + p + a
    return out


def test_the_first_read_builds_the_copy_and_the_next_is_served_from_it(tmp_path, monkeypatch):
    store, key, _ = build(tmp_path)
    first = store.read_dense(key)
    np.testing.assert_array_equal(first.values, expected())
    assert first.probe_ids == tuple(f"p{p}" for p in range(N_PROBES)) and first.alphas == tuple(SPEC["alphas"])
    assert first.tasks == ("relation",) * N_PROBES and first.relations == ("left",) * N_PROBES
    assert (store.folder(key) / DENSE_FILE).is_file()

    def no_chunk_reads(*_a, **_k):
        raise AssertionError("the chunks were read although the dense copy matches them")

    monkeypatch.setattr(EffectStore, "read_table", no_chunk_reads)
    second = EffectStore(tmp_path).read_dense(key)
    np.testing.assert_array_equal(second.values, first.values)
    assert (second.probe_ids, second.tasks, second.relations) == (first.probe_ids, first.tasks, first.relations)


def test_a_recomputed_chunk_with_other_values_makes_the_copy_stale(tmp_path):
    store, key, names = build(tmp_path)
    store.read_dense(key)
    frame = _frame(range(0, 1), range(0, 2))
    frame["value"] = -1.0  # a rerun that computed other numbers: its footer's checksum differs
    chunk_path(store, key, names[0]).unlink()
    store.write_chunk(key, names[0], frame)
    got = EffectStore(tmp_path).read_dense(key).values
    want = expected()
    want[0:2, :, 0, :] = -1.0
    np.testing.assert_array_equal(got, want)


def test_a_tampered_copy_is_ignored_and_rewritten(tmp_path):
    store, key, _ = build(tmp_path)
    store.read_dense(key)
    path = store.folder(key) / DENSE_FILE
    with np.load(path, allow_pickle=False) as z:
        meta, values = z["meta"], z["values"].copy()
    values[0, 0, 0, 0] = 12345.0  # the copy's own checksum no longer holds
    with open(path, "wb") as f:
        np.savez(f, values=values, meta=meta)
    np.testing.assert_array_equal(EffectStore(tmp_path).read_dense(key).values, expected())
    path.write_bytes(b"not a zip")
    np.testing.assert_array_equal(EffectStore(tmp_path).read_dense(key).values, expected())
    with np.load(path, allow_pickle=False) as z:  # rewritten from the chunks
        np.testing.assert_array_equal(z["values"], expected())


def test_a_corrupt_chunk_is_refused_even_with_a_copy_present(tmp_path):
    store, key, names = build(tmp_path)
    store.read_dense(key)
    chunk_path(store, key, names[1]).write_bytes(b"PAR1 not a chunk")
    with pytest.raises(CorruptChunk, match="is unreadable"):
        EffectStore(tmp_path).read_dense(key)


def test_the_copy_equals_the_long_form_read(tmp_path):
    store, key, _ = build(tmp_path)
    frame: pd.DataFrame = store.read(key)
    dense = store.read_dense(key)
    pidx = {p: i for i, p in enumerate(dense.probe_ids)}
    aidx = {a: i for i, a in enumerate(dense.alphas)}
    for row in frame.itertuples():
        assert dense.values[pidx[row.probe_id], aidx[row.alpha], row.layer, row.head] == row.value
