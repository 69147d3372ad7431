"""Move the committed scale vectors from the old, sampled model fingerprint to the full one.

Until issue 21 the fingerprint hashed 4,096 strided values per tensor (:func:`sampled_fingerprint`,
kept here verbatim), which missed edits between the samples; ``workbench.models.load.fingerprint``
now hashes every weight byte. A vector's ``model_fingerprint`` names the model it was trained on, so
a vector of a shipped model keeps naming it only if its fingerprint moves too.

For every model shipped in ``assets/models/`` this computes both fingerprints (loaded as the study
loads it: ``load_vlm(folder)``, float32), then rewrites each vector JSON under
``analyses/results/organism_study*/vectors*/`` whose ``model_fingerprint`` is the OLD fingerprint of a
shipped model to that model's NEW fingerprint (only that string changes). A vector whose fingerprint
matches no shipped model (trained on an earlier organism) is left as it is and listed.

    python analyses/migrate_fingerprints.py            # report only
    python analyses/migrate_fingerprints.py --write    # rewrite the matching files
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
VECTORS = "analyses/results/organism_study*/vectors*/*.json"


def sampled_fingerprint(model: torch.nn.Module, samples: int = 4096) -> str:
    """The fingerprint before issue 21: sha256 of the config and a strided sample of every parameter."""
    from workbench.models.load import config_bytes  # the config part is unchanged

    h = hashlib.sha256(config_bytes(model))
    with torch.no_grad():
        for name, p in sorted(model.state_dict().items()):
            flat = p.detach().reshape(-1)
            step = max(1, flat.numel() // samples)
            sample = flat[::step][:samples].to(torch.float64).cpu()
            h.update(f"{name}|{tuple(p.shape)}|{p.dtype}".encode())
            h.update(sample.numpy().tobytes())
    return h.hexdigest()


def shipped_fingerprints() -> dict[str, tuple[str, str]]:
    """{old fingerprint: (model folder name, new fingerprint)} for every model in assets/models/."""
    from workbench.models.load import fingerprint, load_vlm

    out = {}
    for folder in sorted((ROOT / "assets" / "models").iterdir()):
        if (folder / "config.json").is_file():
            vlm = load_vlm(folder)
            out[sampled_fingerprint(vlm.model)] = (folder.name, fingerprint(vlm.model))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--write", action="store_true", help="rewrite the matching vector files (default: report only)")
    args = ap.parse_args()
    moves = shipped_fingerprints()
    for old, (name, new) in moves.items():
        print(f"{name}: old {old}  new {new}")
    for path in sorted(ROOT.glob(VECTORS)):
        text = path.read_text()
        old = json.loads(text).get("model_fingerprint")
        rel = path.relative_to(ROOT)
        if old in moves:
            name, new = moves[old]
            print(f"{rel}: {name}, {old[:12]} -> {new[:12]}{'' if args.write else ' (dry run)'}")
            if args.write:
                path.write_text(text.replace(old, new))
        else:
            print(f"{rel}: {old[:12] if old else None} is no shipped model's old fingerprint; left as it is")
    return 0


if __name__ == "__main__":
    sys.exit(main())
