"""Progress inside a chunk (work units: probe × variant) and what a cancel says it kept, on a tiny random LLaVA.

The unit counts are hand-computed from the chunking: 6 probes, 2 α, 2 layers × 4 heads, chunks of 1 layer × 3 probes
(4 chunks of 3 × 2 × 4 = 24 units, 96 in all), probe batches of 2 (a chunk's 3 probes come as 2 + 1)."""

from __future__ import annotations

import pytest
import torch

from workbench.errors import Cancelled
from workbench.store.effects import EffectStore
from workbench.sweeps.engine import Chunk, SweepSpec, chunk_units
from workbench.sweeps.run import sweep

CHUNKING = dict(layers_per_chunk=1, probes_per_chunk=3, batch_size=2)


@pytest.fixture(scope="module")
def six(probes32):
    return probes32.filter(lambda it: int(it.id) < 6, name="six")


def test_chunk_units_count_probes_times_variants():
    spec = SweepSpec(alphas=(0.0, 0.5, 2.0))
    assert chunk_units((6, 8), spec, Chunk(0, 2, 0, 5)) == 5 * 3 * 2 * 8
    assert chunk_units((6, 8), SweepSpec(alphas=(0.0, 0.5, 2.0), target="mlp"), Chunk(4, 6, 10, 12)) == 2 * 3 * 2


@pytest.mark.parametrize("positions, steps", [
    ("last", [16, 24]),  # packed: one report per probe batch, 2 probes × 8 variants then 1 × 8
    ("all", [2 * (v + 1) for v in range(8)] + [16 + v + 1 for v in range(8)]),  # naive: per variant of each batch
])
def test_units_move_inside_each_chunk_and_the_numbers_do_not_change(llava_vlm, six, tmp_path, positions, steps):
    spec = SweepSpec(alphas=(0.0, 2.0), positions=positions)
    plain = sweep(llava_vlm, six, spec, EffectStore(tmp_path / "plain"), log=lambda m: None, **CHUNKING)
    seen, chunks = [], []
    watched = sweep(llava_vlm, six, spec, EffectStore(tmp_path / "watched"), log=lambda m: None,
                    units=lambda d, t: seen.append((d, t)), progress=lambda d, t: chunks.append((d, len(seen))), **CHUNKING)
    assert torch.equal(watched.values, plain.values)  # counting changes no number
    assert {t for _, t in seen} == {96}
    per_chunk = [0] + steps + [24]  # the start (or the previous chunk's end), inside the chunk, then the chunk stored
    expected = [(0, 96)] + [(24 * c + s, 96) for c in range(4) for s in per_chunk[1:]]
    assert seen == expected
    first_stored = chunks[1][1]  # how many unit reports had come when chunk 1 was stored
    assert any(0 < d < 24 for d, _ in seen[:first_stored])  # progress before the first chunk is stored


def test_a_cancel_says_what_the_store_kept(llava_vlm, six, tmp_path):
    spec = SweepSpec(alphas=(0.0, 2.0), positions="all")
    store = EffectStore(tmp_path)
    units: list[int] = []
    with pytest.raises(Cancelled, match=r"cancelled before any chunk finished: nothing stored$"):
        sweep(llava_vlm, six, spec, store, log=lambda m: None, units=lambda d, t: units.append(d),
              should_stop=lambda: units[-1] >= 4, **CHUNKING)  # inside chunk 1, after 4 of its 24 units
    (entry,) = store.ls()
    assert entry.done == 0
    stored: list[int] = []
    with pytest.raises(Cancelled, match=r"cancelled after 1 of 4 chunks; chunk \S+ abandoned; 1 of 4 chunks kept in the store; "
                                        r"rerun to resume$"):
        sweep(llava_vlm, six, spec, store, log=lambda m: None, progress=lambda d, t: stored.append(d),
              units=lambda d, t: units.append(d), should_stop=lambda: stored[-1] == 1 and units[-1] >= 24 + 4, **CHUNKING)
    assert store.ls()[0].done == 1
    with pytest.raises(Cancelled, match=r"cancelled after 0 of 3 chunks; 1 of 4 chunks kept in the store; rerun to resume$"):
        sweep(llava_vlm, six, spec, store, log=lambda m: None, should_stop=lambda: True, **CHUNKING)  # resumed, stopped at once
