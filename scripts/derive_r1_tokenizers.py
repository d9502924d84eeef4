"""Derive the two DeepSeek-R1 distill tokenizers from the base vocabularies.

The real distill tokenizer files cannot be fetched here, so the test fixtures are
built from the base Llama-3.1 and Qwen3 tokenizers plus the DeepSeek special tokens.

Id choices (only BOS/EOS are confirmed against the real files; the rest are ours):
- r1_llama: Llama-3.1 BPE. 128000/128001 become <｜begin▁of▁sentence｜> and
  <｜end▁of▁sentence｜> (as in DeepSeek-R1-Distill-Llama-8B). <｜User｜>,
  <｜Assistant｜>, <think>, </think>, <｜▁pad▁｜> take the reserved slots
  128011-128015 (Llama-3.1's reserved_special_token_3..7, the first run of five
  free reserved slots). The tool-call markers are NOT single tokens here: the Llama
  distill was not trained on tool calls, so they exist only as text, which exercises
  the multi-token marker path.
- r1_qwen3: Qwen3 BPE. 151643/151645 become BOS/EOS. Qwen3's own <think> (151667)
  and </think> (151668) are kept. <｜User｜>, <｜Assistant｜> and the nine tool
  markers are appended as added tokens 151669-151679, inside the 151936 embedding
  rows, so here every marker is a single token.
Usage: derive_r1_tokenizers.py CACHE_DIR (reads llama3_1/qwen3 .tokenizer.json there).
"""
import json
import os
import sys

BOS = "<｜begin▁of▁sentence｜>"
EOS = "<｜end▁of▁sentence｜>"
USER = "<｜User｜>"
ASSISTANT = "<｜Assistant｜>"
TOOL_MARKERS = [
    "<｜tool▁calls▁begin｜>",
    "<｜tool▁calls▁end｜>",
    "<｜tool▁call▁begin｜>",
    "<｜tool▁call▁end｜>",
    "<｜tool▁outputs▁begin｜>",
    "<｜tool▁outputs▁end｜>",
    "<｜tool▁output▁begin｜>",
    "<｜tool▁output▁end｜>",
    "<｜tool▁sep｜>",
]


def added(tid, content, special):
    return {
        "id": tid,
        "content": content,
        "single_word": False,
        "lstrip": False,
        "rstrip": False,
        "normalized": False,
        "special": special,
    }


def rename(tok, tid, content, special=True):
    for a in tok["added_tokens"]:
        if a["id"] == tid:
            a["content"] = content
            a["special"] = special
            return
    raise SystemExit(f"id {tid} is not an added token")


def set_bos_template(tok, bos_id):
    """Point the post-processor's BOS at the renamed token (we encode prompts
    without it, but the file must stay self-consistent)."""
    pp = tok.get("post_processor")
    procs = pp.get("processors", [pp]) if pp else []
    for p in procs:
        if p.get("type") != "TemplateProcessing":
            continue
        for part in ("single", "pair"):
            for piece in p[part]:
                if "SpecialToken" in piece:
                    piece["SpecialToken"]["id"] = BOS
        p["special_tokens"] = {BOS: {"id": BOS, "ids": [bos_id], "tokens": [BOS]}}


def llama(src):
    tok = json.load(open(src, encoding="utf-8"))
    rename(tok, 128000, BOS)
    rename(tok, 128001, EOS)
    for tid, content, special in [
        (128011, USER, False),
        (128012, ASSISTANT, False),
        (128013, "<think>", False),
        (128014, "</think>", False),
        (128015, "<｜▁pad▁｜>", True),
    ]:
        rename(tok, tid, content, special)
    set_bos_template(tok, 128000)
    return tok


def qwen3(src):
    tok = json.load(open(src, encoding="utf-8"))
    rename(tok, 151643, BOS)
    rename(tok, 151645, EOS)
    next_id = max(a["id"] for a in tok["added_tokens"]) + 1
    assert next_id == 151669, next_id
    for content in [USER, ASSISTANT] + TOOL_MARKERS:
        tok["added_tokens"].append(added(next_id, content, False))
        next_id += 1
    set_bos_template(tok, 151643)
    return tok


def main():
    cache = sys.argv[1]
    for name, fn, src in [
        ("r1_llama", llama, "llama3_1"),
        ("r1_qwen3", qwen3, "qwen3"),
    ]:
        out = os.path.join(cache, f"{name}.tokenizer.json")
        inp = os.path.join(cache, f"{src}.tokenizer.json")
        if os.path.exists(out) and os.path.getmtime(out) >= os.path.getmtime(inp) \
                and os.path.getmtime(out) >= os.path.getmtime(__file__):
            continue
        tok = fn(inp)
        with open(out + ".tmp", "w", encoding="utf-8") as f:
            json.dump(tok, f, ensure_ascii=False)
        os.replace(out + ".tmp", out)


if __name__ == "__main__":
    main()
