"""Which color questions does an organism get wrong, and what does it answer instead?

On the fixed 500-probe evaluation set, every color question whose asked-for object is a held-out color–shape
pair is counted, and every wrong answer is printed with the scene and the option probabilities. This is how
the stage-2 organism's color shortfall was read: a held-out pair's color replaced by the nearest color that
shape has in training (a cyan cross called green), i.e. a learned question prior, not a blind image token
(``analyses/results/organism_staged_cpu.md``, section 4).

    python analyses/organism_color_errors.py assets/models/organism [MORE_MODELS …]
"""

from __future__ import annotations

import sys

from workbench.interventions.backends import make_backend
from workbench.models.load import load_vlm
from workbench.models.prompts import build_batch
from workbench.organism.probesets import eval_probes


def main(paths: list[str]) -> int:
    ps = eval_probes(0)
    held = {tuple(p) for p in ps.info["heldout_pairs"]}
    items = [it for it in ps.items if it.task == "color"]
    for path in paths:
        vlm = load_vlm(path, attn_implementation="eager")
        b = build_batch(vlm, ps, items)
        probs = make_backend(vlm, "torch").last_logits(b.inputs).gather(1, b.option_ids).softmax(1)  # [items, options]
        pred = probs.argmax(1)
        n_held = right_held = wrong_in_scene = 0
        for i, it in enumerate(items):
            asked = next(o for o in it.scene["objects"] if o["color"] == it.answer)
            is_held = (asked["color"], asked["shape"]) in held
            said = it.options[int(pred[i])]
            n_held += is_held
            right_held += is_held and said == it.answer
            if said != it.answer:
                wrong_in_scene += said in {o["color"] for o in it.scene["objects"]}
                print(f"  {it.question} answer {it.answer} ({'held-out pair' if is_held else 'seen pair'}), said {said}; "
                      f"p(answer) {float(probs[i, b.answer[i]]):.3f}; "
                      f"scene {[(o['color'], o['shape']) for o in it.scene['objects']]}")
        wrong = int((pred != b.answer).sum())
        print(f"{path}: {len(items) - wrong}/{len(items)} color questions right; "
              f"held-out pairs asked for: {right_held}/{n_held} right; "
              f"{wrong_in_scene} of {wrong} wrong answers name another object's color in the scene")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or ["assets/models/organism"]))
