"""Models: loading (local folder or hub id), the sites table, prompts.

    sites    one row per VLM family: where decoder layers, o_proj and mlp live; resolve_site()
    load     load_vlm(), wrap_vlm(), VLM, fingerprint()
    prompts  chat-template prompts, left-padded batches, answer options → token ids
"""
