"""Reference logits from Hugging Face transformers for taper's parity tests.

Usage: reference_logits.py MODEL_DIR OUT_PREFIX N_TOKENS SEED

MODEL_DIR holds a config.json and safetensors written by `taper-make-model`
(tiny preset, f32). Writes OUT_PREFIX.json (the token ids and shapes) and
OUT_PREFIX.logits.bin (little-endian f32, one row of vocab logits per token),
computed in f32 on the CPU with eager attention, all tokens in one forward pass.

YaRN: DeepSeek's Qwen3 config sets `rope_scaling.attn_factor`, a multiplier on
YaRN's cos/sin scale 0.1 ln(factor) + 1 (vLLM and llama.cpp apply it; transformers
ignores the key). taper applies it, so the reference passes the product to
transformers as `attention_factor`, which transformers does honour.
"""
import json
import math
import struct
import sys

import torch
from transformers import AutoConfig, AutoModelForCausalLM


def tokens(n, vocab, seed):
    """The same id stream the Rust test regenerates (a 64-bit LCG)."""
    state = seed
    out = []
    for _ in range(n):
        state = (state * 6364136223846793005 + 1442695040888963407) % (1 << 64)
        out.append((state >> 33) % vocab)
    return out


def main():
    model_dir, out_prefix, n, seed = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    torch.manual_seed(0)
    config = AutoConfig.from_pretrained(model_dir)
    raw = json.load(open(f"{model_dir}/config.json"))
    scaling = raw.get("rope_scaling") or {}
    if scaling.get("rope_type") == "yarn" and "attn_factor" in scaling:
        factor = scaling["factor"]
        mscale = 0.1 * math.log(factor) + 1.0 if factor > 1 else 1.0
        params = dict(config.rope_parameters)
        params["attention_factor"] = mscale * scaling["attn_factor"]
        config.rope_parameters = params
    model = AutoModelForCausalLM.from_pretrained(
        model_dir, config=config, dtype=torch.float32, attn_implementation="eager"
    )
    model.eval()
    ids = tokens(n, config.vocab_size, seed)
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].float().contiguous()
    with open(f"{out_prefix}.logits.bin", "wb") as f:
        f.write(struct.pack(f"<{logits.numel()}f", *logits.flatten().tolist()))
    meta = {
        "architecture": raw["architectures"][0],
        "seed": seed,
        "tokens": ids,
        "vocab": config.vocab_size,
        "transformers": __import__("transformers").__version__,
        "torch": torch.__version__,
    }
    json.dump(meta, open(f"{out_prefix}.json", "w"), indent=1)


if __name__ == "__main__":
    main()
