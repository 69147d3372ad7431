"""Head sets: ranking, JSON/CSV round trips, refusal of another model's set, malformed files."""

import pytest
import torch

from workbench.discovery.headsets import HeadSet, recall_at_k, top_heads
from workbench.errors import WorkbenchError

SCORES = torch.tensor([[0.1, 0.9, -0.3], [0.5, 0.0, 2.0]])  # [layer, head]


def test_top_heads_by_hand():
    hs = top_heads(SCORES, 3, "m", "f" * 64, "sweep")
    assert hs.heads == ((1, 2), (0, 1), (1, 0)) and hs.scores == pytest.approx((2.0, 0.9, 0.5))
    assert recall_at_k(hs, [(1, 2), (0, 0)]) == 0.5
    with pytest.raises(WorkbenchError, match="k = 7 is out of range for 2×3 heads"):
        top_heads(SCORES, 7, "m", "f", "sweep")


@pytest.mark.parametrize("suffix", [".json", ".csv"])
def test_round_trip(tmp_path, suffix):
    hs = top_heads(SCORES, 4, "organism", "a" * 64, "sweep:logit_diff@alpha=0")
    path = hs.save(tmp_path / f"heads{suffix}")
    assert HeadSet.load(path) == hs


def test_a_set_for_another_model_is_refused():
    hs = top_heads(SCORES, 2, "organism", "a" * 64, "sweep")
    hs.check_model("a" * 64)
    with pytest.raises(WorkbenchError,
                       match="made for 'organism' \\(fingerprint aaaaaaaaaaaa…\\), not for llava \\(bbbbbbbbbbbb…\\)"):
        hs.check_model("b" * 64, "llava")


@pytest.mark.parametrize("name,text,msg", [
    ("a.json", "{not json", "not a valid head set"),
    ("b.json", '{"format": "other"}', "not a valid head set"),
    ("c.csv", "layer,head\n1,2\n", "expected columns"),
    ("d.csv", "layer,head,score,method,model,model_fingerprint,created\n1,x,0.5,m,m,f,t\n", "not a valid head set"),
    ("e.txt", "", "unknown head-set format"),
])
def test_malformed_files(tmp_path, name, text, msg):
    (tmp_path / name).write_text(text)
    with pytest.raises(WorkbenchError, match=msg):
        HeadSet.load(tmp_path / name)
