"""ScAle: learned, bounded per-head (and per-MLP) scales that repair a frozen model.

    vector    ScaleVector: effective scales [layer, head] + [layer], safetensors/JSON and .npy files
    train     the training loop (ScaleParams, fit, train_scales), shared with the baselines
    baselines LoRA, (IA)³ (peft) and random-head ScAle in the same harness
    apply     apply_scales(hf_model, vector): plain torch hooks on a deployed model
"""
