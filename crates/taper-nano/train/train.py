"""Trains the nano model: tokenizer, Llama-block transformer, loss curve, export.

Reads the corpus `nano-corpus` writes (one JSON object per line: the system prompt
and the prompts and completions of both turns of a solved problem) and writes into
the output directory:

- tokenizer.json: byte-level BPE with the Llama-3 split pattern (digits end up one
  per token: the merges are learned with digits isolated), the DeepSeek markers as
  added special tokens;
- model/: config.json, model.safetensors (Hugging Face Llama names and layout) and
  tokenizer.json, which `taper-model` loads and the GGUF step converts;
- loss.csv and loss.png: the training loss per step.

Training packs many problems into each row behind one copy of the system prompt:
a problem's tokens attend to the system prompt and to their own turn only, with
the positions they have in a real run, so the model computes exactly what it
computes at inference while the long system prompt is paid once per row. The loss
is on the completion tokens only (what the model writes; prompts are context).
"""

import argparse
import json
import math
import os
import random
import re
import struct
import sys
import time
import zlib

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

LLAMA3_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
    r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
BOS = "<｜begin▁of▁sentence｜>"
EOS = "<｜end▁of▁sentence｜>"
SPECIALS = [
    BOS,
    EOS,
    "<｜User｜>",
    "<｜Assistant｜>",
    "<think>",
    "</think>",
    "<｜tool▁calls▁begin｜>",
    "<｜tool▁calls▁end｜>",
    "<｜tool▁call▁begin｜>",
    "<｜tool▁call▁end｜>",
    "<｜tool▁sep｜>",
    "<｜tool▁outputs▁begin｜>",
    "<｜tool▁outputs▁end｜>",
    "<｜tool▁output▁begin｜>",
    "<｜tool▁output▁end｜>",
]


def log(*args):
    print(*args, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- tokenizer


def train_tokenizer(records, vocab_size):
    """Byte-level BPE trained on the corpus texts split at the markers."""
    split = re.compile("|".join(re.escape(s) for s in SPECIALS))

    def pieces():
        # The system prompt once per 50 problems: it is in every prompt, and its
        # words should be whole tokens, but it must not crowd out the problems.
        for i, r in enumerate(records):
            texts = [r["prompt1"], r["completion1"], r["prompt2"], r["completion2"]]
            if i % 50:
                texts = [t.replace(r["system"], "") for t in texts]
            for t in texts:
                yield from (p for p in split.split(t) if p)

    tok = Tokenizer(models.BPE(ignore_merges=True))
    # Digits isolated while learning the merges: no merge joins digits, so the
    # Llama-3 pattern's digit groups still tokenize one digit per token.
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(r"\p{N}"), "isolated"),
            pre_tokenizers.Split(Regex(LLAMA3_REGEX), "isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(pieces(), trainer)
    doc = json.loads(tok.to_str())
    # The pre-tokenizer a GGUF `llama-bpe` vocabulary rebuilds, exactly.
    doc["pre_tokenizer"] = {
        "type": "Sequence",
        "pretokenizers": [
            {
                "type": "Split",
                "pattern": {"Regex": LLAMA3_REGEX},
                "behavior": "Isolated",
                "invert": False,
            },
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False},
        ],
    }
    doc["decoder"] = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True}
    bos_id = next(t["id"] for t in doc["added_tokens"] if t["content"] == BOS)
    doc["post_processor"] = {
        "type": "TemplateProcessing",
        "single": [{"SpecialToken": {"id": BOS, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
        "pair": [
            {"SpecialToken": {"id": BOS, "type_id": 0}},
            {"Sequence": {"id": "A", "type_id": 0}},
            {"SpecialToken": {"id": BOS, "type_id": 1}},
            {"Sequence": {"id": "B", "type_id": 1}},
        ],
        "special_tokens": {BOS: {"id": BOS, "ids": [bos_id], "tokens": [BOS]}},
    }
    return json.dumps(doc, ensure_ascii=False, indent=1)


# ---------------------------------------------------------------- data


def encode_records(tok, records):
    """Each problem as (shared, branch1, branch2): token ids and loss masks, after
    the system prefix (BOS, system prompt, `<｜User｜>`), which is returned once.

    Markers are special tokens, so the text on either side of one is tokenized on
    its own: encoding the prefix once and the rest of each text is the same as
    encoding each whole text."""
    system = records[0]["system"]
    head = BOS + system
    system_ids = tok.encode(head, add_special_tokens=False).ids
    texts = []
    for r in records:
        assert r["system"] == system
        for key in ("prompt1", "prompt2"):
            assert r[key].startswith(head)
            texts.append(r[key][len(head) :])
        texts += [r["completion1"], r["completion2"]]
    ids = [e.ids for e in tok.encode_batch(texts, add_special_tokens=False)]
    problems = []
    for i in range(len(records)):
        p1, p2, c1, c2 = ids[4 * i : 4 * i + 4]
        n = 0
        while n < min(len(p1), len(p2)) and p1[n] == p2[n]:
            n += 1
        shared = p1[:n]
        b1 = (p1[n:] + c1, [0] * (len(p1) - n) + [1] * len(c1))
        b2 = (p2[n:] + c2, [0] * (len(p2) - n) + [1] * len(c2))
        problems.append((shared, b1, b2))
    user = tok.token_to_id("<｜User｜>")
    assert all(s[0] == user for s, _, _ in problems)
    return system_ids, problems


def problem_batches(problems, size, rng, max_gap=0):
    """Shuffled batches of `size` problems, each problem laid out as its shared
    prompt part then both branches. Per token: id, position (after the system
    prompt), branch (0 shared, 1, 2, -1 padding) and target (-100: no loss).

    With `max_gap`, half the problems start up to that many positions after the
    system prompt instead of right after it, as a later turn of a chat does: a
    model trained at one offset only reads a problem 300 positions later at a
    third of its accuracy (README, "Training runs")."""
    order = list(range(len(problems)))
    rng.shuffle(order)
    # Problems of similar length together (less padding), batches in random order.
    length = lambda i: sum(len(p) for p in (problems[i][0], problems[i][1][0], problems[i][2][0]))
    group = size * 4
    batches = []
    for g in range(0, len(order), group):
        chunk = sorted(order[g : g + group], key=length)
        batches += [chunk[b : b + size] for b in range(0, len(chunk) - size + 1, size)]
    rng.shuffle(batches)
    for batch in batches:
        rows = []
        for i in batch:
            shared, b1, b2 = problems[i]
            gap = rng.randint(1, max_gap) if max_gap and rng.random() < 0.5 else 0
            row = {"ids": list(shared), "pos": list(range(gap, gap + len(shared))), "branch": [0] * len(shared),
                   "target": [-100] * len(shared)}
            for br, (ids, mask) in ((1, b1), (2, b2)):
                # A branch's first token is predicted by the last shared token; the
                # branches start inside the prompts, so that target has no loss.
                for j, t in enumerate(ids):
                    row["ids"].append(t)
                    row["pos"].append(gap + len(shared) + j)
                    row["branch"].append(br)
                    has_loss = j + 1 < len(ids) and mask[j + 1]
                    row["target"].append(ids[j + 1] if has_loss else -100)
            rows.append(row)
        yield rows


def to_tensors(rows, offset):
    n, L = len(rows), max(len(r["ids"]) for r in rows)
    ids = torch.zeros(n, L, dtype=torch.long)
    pos = torch.zeros(n, L, dtype=torch.long)
    branch = torch.full((n, L), -1, dtype=torch.long)
    target = torch.full((n, L), -100, dtype=torch.long)
    for i, r in enumerate(rows):
        k = len(r["ids"])
        ids[i, :k] = torch.tensor(r["ids"])
        pos[i, :k] = torch.tensor(r["pos"]) + offset
        branch[i, :k] = torch.tensor(r["branch"])
        target[i, :k] = torch.tensor(r["target"])
    return ids, pos, branch, target


def attention_mask(branch, system_len):
    """(P, 1, L, S + L) boolean: a problem token attends to the whole system prompt
    and, causally, to its shared part and its own branch."""
    P, L = branch.shape
    causal = torch.ones(L, L, dtype=torch.bool).tril()
    bi, bj = branch[:, :, None], branch[:, None, :]
    own = causal[None] & ((bj == 0) | (bj == bi)) & (bj >= 0)
    own = own | torch.eye(L, dtype=torch.bool)[None]
    system = torch.ones(P, L, system_len, dtype=torch.bool)
    return torch.cat((system, own), dim=2)[:, None]


# ---------------------------------------------------------------- model


class RMSNorm(torch.nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))


def rotate_half(x):
    a, b = x.chunk(2, dim=-1)
    return torch.cat((-b, a), dim=-1)


class Block(torch.nn.Module):
    def __init__(self, c):
        super().__init__()
        h, hd = c["hidden_size"], c["head_dim"]
        self.nh, self.nkv, self.hd = c["num_attention_heads"], c["num_key_value_heads"], hd
        self.input_layernorm = RMSNorm(h, c["rms_norm_eps"])
        self.post_attention_layernorm = RMSNorm(h, c["rms_norm_eps"])
        self.q_proj = torch.nn.Linear(h, self.nh * hd, bias=False)
        self.k_proj = torch.nn.Linear(h, self.nkv * hd, bias=False)
        self.v_proj = torch.nn.Linear(h, self.nkv * hd, bias=False)
        self.o_proj = torch.nn.Linear(self.nh * hd, h, bias=False)
        f = c["intermediate_size"]
        self.gate_proj = torch.nn.Linear(h, f, bias=False)
        self.up_proj = torch.nn.Linear(h, f, bias=False)
        self.down_proj = torch.nn.Linear(f, h, bias=False)

    def qkv(self, x, cos, sin):
        B, T, _ = x.shape
        y = self.input_layernorm(x)
        q = self.q_proj(y).view(B, T, self.nh, self.hd).transpose(1, 2)
        k = self.k_proj(y).view(B, T, self.nkv, self.hd).transpose(1, 2)
        v = self.v_proj(y).view(B, T, self.nkv, self.hd).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        rep = self.nh // self.nkv
        return q, k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)

    def finish(self, x, a):
        B, _, T, _ = a.shape
        x = x + self.o_proj(a.transpose(1, 2).reshape(B, T, -1))
        y = self.post_attention_layernorm(x)
        return x + self.down_proj(F.silu(self.gate_proj(y)) * self.up_proj(y))

    def system(self, xs, rope_s):
        """The system prompt through this block: (output, its keys, its values)."""
        q, k, v = self.qkv(xs, *rope_s)
        return self.finish(xs, F.scaled_dot_product_attention(q, k, v, is_causal=True)), k, v

    def forward(self, xp, rope_p, ks, vs, mask):
        """The problems (P, L, h), attending to the system keys and values too."""
        qp, kp, vp = self.qkv(xp, *rope_p)
        P = xp.shape[0]
        k = torch.cat((ks.expand(P, -1, -1, -1), kp), dim=2)
        v = torch.cat((vs.expand(P, -1, -1, -1), vp), dim=2)
        return self.finish(xp, F.scaled_dot_product_attention(qp, k, v, attn_mask=mask))


class Llama(torch.nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        self.embed_tokens = torch.nn.Embedding(c["vocab_size"], c["hidden_size"])
        self.layers = torch.nn.ModuleList([Block(c) for _ in range(c["num_hidden_layers"])])
        self.norm = RMSNorm(c["hidden_size"], c["rms_norm_eps"])
        self.lm_head = torch.nn.Linear(c["hidden_size"], c["vocab_size"], bias=False)
        hd = c["head_dim"]
        inv = 1.0 / (c["rope_theta"] ** (torch.arange(0, hd, 2, dtype=torch.float32) / hd))
        self.register_buffer("inv_freq", inv, persistent=False)
        for m in self.modules():
            if isinstance(m, (torch.nn.Linear, torch.nn.Embedding)):
                torch.nn.init.normal_(m.weight, std=0.02)
        for layer in self.layers:
            scale = 0.02 / math.sqrt(2 * c["num_hidden_layers"])
            torch.nn.init.normal_(layer.o_proj.weight, std=scale)
            torch.nn.init.normal_(layer.down_proj.weight, std=scale)

    def rope(self, pos):
        freqs = pos[..., None].float() * self.inv_freq
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos()[:, None], emb.sin()[:, None]

    def forward(self, system_ids, ids, pos, mask):
        """Logits of the problem tokens, behind one copy of the system prompt.

        The system prompt is computed without gradients: it is the same in every
        run, so the model never needs to learn to write or re-read it differently,
        and its backward pass would cost a third of the step."""
        S = system_ids.shape[1]
        rope_s = self.rope(torch.arange(S)[None])
        with torch.no_grad():
            xs = self.embed_tokens(system_ids)
            cache = []
            for layer in self.layers:
                xs, ks, vs = layer.system(xs, rope_s)
                cache.append((ks, vs))
        rope_p = self.rope(pos)
        xp = self.embed_tokens(ids)
        for layer, (ks, vs) in zip(self.layers, cache):
            xp = layer(xp, rope_p, ks, vs, mask)
        return self.lm_head(self.norm(xp))

    def load_hf(self, path):
        """Starts from trained weights (a model.safetensors this script wrote)."""
        from safetensors.torch import load_file

        given = load_file(path)
        own = {k: v for k, v in self.hf_state_dict_live().items()}
        assert set(given) == set(own), "the weights are of another shape of model"
        with torch.no_grad():
            for k, p in own.items():
                p.copy_(given[k])

    def hf_state_dict(self):
        return {k: v.detach().float().contiguous() for k, v in self.hf_state_dict_live().items()}

    def hf_state_dict_live(self):
        out = {"model.embed_tokens.weight": self.embed_tokens.weight, "model.norm.weight": self.norm.weight,
               "lm_head.weight": self.lm_head.weight}
        for i, l in enumerate(self.layers):
            p = f"model.layers.{i}."
            out[p + "input_layernorm.weight"] = l.input_layernorm.weight
            out[p + "post_attention_layernorm.weight"] = l.post_attention_layernorm.weight
            for n in ("q_proj", "k_proj", "v_proj", "o_proj"):
                out[p + f"self_attn.{n}.weight"] = getattr(l, n).weight
            for n in ("gate_proj", "up_proj", "down_proj"):
                out[p + f"mlp.{n}.weight"] = getattr(l, n).weight
        return out


@torch.no_grad()
def exact_match(model, system, system_ids, problems, size=25, gap=0):
    """Teacher-forced exact match on held-out problems: the share of first turns,
    second turns and whole problems whose every written token is the model's
    argmax. A problem that matches is one greedy decoding solves. With `gap`, the
    problems start that many positions after the system prompt."""
    model.eval()
    first = second = both = 0
    rng = random.Random(0)
    for rows in problem_batches(problems, size, rng):
        ids, pos, branch, target = to_tensors(rows, len(system_ids) + gap)
        pred = model(system, ids, pos, attention_mask(branch, len(system_ids))).argmax(-1)
        ok = (pred == target) | (target == -100)
        for i in range(len(rows)):
            b1 = bool(ok[i][branch[i] == 1].all())
            b2 = bool(ok[i][branch[i] == 2].all())
            first, second, both = first + b1, second + b2, both + (b1 and b2)
    model.train()
    n = len(problems) // size * size
    return f"first turn {first / n:.1%}, second turn {second / n:.1%}, both {both / n:.1%} of {n}"


def hf_config(c):
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": c["vocab_size"],
        "hidden_size": c["hidden_size"],
        "intermediate_size": c["intermediate_size"],
        "num_hidden_layers": c["num_hidden_layers"],
        "num_attention_heads": c["num_attention_heads"],
        "num_key_value_heads": c["num_key_value_heads"],
        "head_dim": c["head_dim"],
        "rms_norm_eps": c["rms_norm_eps"],
        "rope_theta": c["rope_theta"],
        "rope_scaling": None,
        "max_position_embeddings": c["max_position_embeddings"],
        "tie_word_embeddings": False,
        "hidden_act": "silu",
        "torch_dtype": "float32",
        "bos_token_id": 0,
        "eos_token_id": 1,
    }


# ---------------------------------------------------------------- loss plot


def write_png(path, losses, width=800, height=480):
    """The loss curve (log scale) as a PNG, drawn without a plotting library."""
    img = [[(255, 255, 255)] * width for _ in range(height)]
    left, right, top, bottom = 60, width - 20, 20, height - 40

    def put(x, y, color):
        if 0 <= x < width and 0 <= y < height:
            img[y][x] = color

    for x in range(left, right + 1):
        put(x, bottom, (0, 0, 0))
    for y in range(top, bottom + 1):
        put(left, y, (0, 0, 0))
    vals = [math.log10(max(l, 1e-6)) for l in losses]
    lo, hi = math.floor(min(vals)), math.ceil(max(vals))
    if hi == lo:
        hi = lo + 1
    # Grid lines at powers of ten.
    for d in range(lo, hi + 1):
        y = bottom - round((d - lo) / (hi - lo) * (bottom - top))
        for x in range(left, right, 4):
            put(x, y, (190, 190, 190))
        draw_text(put, f"1e{d}", 8, y - 3)
    n = len(vals)
    prev = None
    for i, v in enumerate(vals):
        x = left + round(i / max(n - 1, 1) * (right - left))
        y = bottom - round((v - lo) / (hi - lo) * (bottom - top))
        if prev is not None:
            steps = max(abs(x - prev[0]), abs(y - prev[1]), 1)
            for s in range(steps + 1):
                put(prev[0] + round((x - prev[0]) * s / steps), prev[1] + round((y - prev[1]) * s / steps), (200, 40, 40))
        prev = (x, y)
    draw_text(put, f"loss per step, {n} steps", left + 10, bottom + 14)
    raw = b"".join(b"\x00" + bytes(c for px in row for c in px) for row in img)

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")
    with open(path, "wb") as f:
        f.write(png)


# A 3x5 pixel font for the labels.
FONT = {
    "0": "111101101101111", "1": "010110010010111", "2": "111001111100111", "3": "111001111001111",
    "4": "101101111001001", "5": "111100111001111", "6": "111100111101111", "7": "111001001001001",
    "8": "111101111101111", "9": "111101111001111", "e": "000111111100111", "-": "000000111000000",
    "l": "100100100100111", "o": "000111101101111", "s": "000111100001111", "p": "000111101111100",
    "r": "000111100100100", "t": "010111010010011", ",": "000000000010100", " ": "000000000000000",
}


def draw_text(put, text, x, y):
    for ch in text:
        bits = FONT.get(ch, FONT[" "])
        for k, b in enumerate(bits):
            if b == "1":
                for dx in range(2):
                    for dy in range(2):
                        put(x + 2 * (k % 3) + dx, y + 2 * (k // 3) + dy, (0, 0, 0))
        x += 8


# ---------------------------------------------------------------- main


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--vocab", type=int, default=1024)
    ap.add_argument("--hidden", type=int, default=192)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--ffn", type=int, default=512)
    ap.add_argument("--batch", type=int, default=16, help="problems per step")
    # 1e-3, not 3e-3: at 3e-3 the heads that copy tokens (numbers, items) from the
    # problem form thousands of steps later, if at all (README, "Training runs").
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--steps", type=int, default=2500, help="optimizer steps (the schedule spans them)")
    ap.add_argument("--minutes", type=float, default=60.0, help="give up (an error) after this long")
    ap.add_argument("--heldout", help="held-out corpus: exact-match accuracy is logged on it")
    ap.add_argument("--eval-every", type=int, default=250)
    ap.add_argument("--eval-n", type=int, default=200)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--position-gap", type=int, default=640,
                    help="the most positions a problem starts after the system prompt (half of them do)")
    ap.add_argument("--init", help="start from this model.safetensors (a second stage)")
    ap.add_argument("--warmup", type=int, default=30)
    args = ap.parse_args()

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    rng = random.Random(args.seed)
    os.makedirs(os.path.join(args.out, "model"), exist_ok=True)
    with open(args.corpus, encoding="utf-8") as f:
        records = [json.loads(line) for line in f]
    log(f"{len(records)} problems")

    t0 = time.time()
    if args.init:
        # A second stage keeps the first stage's vocabulary.
        with open(os.path.join(os.path.dirname(args.init), "tokenizer.json"), encoding="utf-8") as f:
            tok_json = f.read()
    else:
        tok_json = train_tokenizer(records, args.vocab)
    for path in (os.path.join(args.out, "tokenizer.json"), os.path.join(args.out, "model", "tokenizer.json")):
        with open(path, "w", encoding="utf-8") as f:
            f.write(tok_json)
    tok = Tokenizer.from_str(tok_json)
    vocab = tok.get_vocab_size()
    log(f"tokenizer: {vocab} tokens in {time.time() - t0:.0f}s")

    t0 = time.time()
    system_ids, problems = encode_records(tok, records)
    per = sum(len(s) + len(a[0]) + len(b[0]) for s, a, b in problems) / len(problems)
    log(f"encoded in {time.time() - t0:.0f}s: system prompt {len(system_ids)} tokens, {per:.0f} per problem")

    # Rows padded to a multiple of 64 so the embedding rows quantize in blocks.
    c = {
        "vocab_size": (vocab + 63) // 64 * 64,
        "hidden_size": args.hidden,
        "intermediate_size": args.ffn,
        "num_hidden_layers": args.layers,
        "num_attention_heads": args.heads,
        "num_key_value_heads": args.kv_heads,
        "head_dim": args.hidden // args.heads,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "max_position_embeddings": 2048,
    }
    model = Llama(c)
    if args.init:
        model.load_hf(args.init)
        log(f"starting from {args.init}")
    params = sum(p.numel() for p in model.parameters())
    log(f"model: {params / 1e6:.2f}M parameters")
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.05}, {"params": no_decay, "weight_decay": 0.0}],
        lr=args.lr, betas=(0.9, 0.95),
    )

    heldout = None
    if args.heldout:
        with open(args.heldout, encoding="utf-8") as f:
            held = [json.loads(line) for _, line in zip(range(args.eval_n), f)]
        held_system, heldout = encode_records(tok, held)
        assert held_system == system_ids, "the held-out corpus has another system prompt"

    # The same measure on training problems tells underfitting from failing to
    # generalize.
    train_probe = problems[: args.eval_n]

    warmup = args.warmup
    losses = []
    start = time.time()
    step = 0
    tokens = 0
    epoch = 0
    system = torch.tensor([system_ids])
    log_file = open(os.path.join(args.out, "log.txt"), "a")

    def report(line):
        log(line)
        log_file.write(line + "\n")
        log_file.flush()

    # A step-based schedule (linear warmup, cosine to 5%), so a run is the same
    # from the same seed however busy the machine is.
    while step < args.steps:
        epoch += 1
        for rows in problem_batches(problems, args.batch, rng, args.position_gap):
            if step >= args.steps:
                break
            if time.time() - start > args.minutes * 60:
                raise SystemExit(f"training passed its {args.minutes} minute limit at step {step}")
            progress = step / args.steps
            lr = args.lr * min(1.0, (step + 1) / warmup) * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))
            for g in opt.param_groups:
                g["lr"] = lr
            ids, pos, branch, target = to_tensors(rows, len(system_ids))
            logits = model(system, ids, pos, attention_mask(branch, len(system_ids)))
            loss = F.cross_entropy(logits.view(-1, logits.shape[-1]), target.view(-1), ignore_index=-100)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            losses.append(loss.item())
            step += 1
            tokens += ids.numel() + len(system_ids)
            if step % 25 == 0 or step == 1:
                tps = tokens / (time.time() - start)
                report(f"epoch {epoch} step {step} loss {loss.item():.4f} lr {lr:.2e} {tps:.0f} tok/s {time.time() - start:.0f}s")
            if heldout and (step % args.eval_every == 0 or step == args.steps):
                report(f"step {step} held-out exact match: {exact_match(model, system, system_ids, heldout)}")
                report(f"step {step} training exact match: {exact_match(model, system, system_ids, train_probe)}")
    report(f"trained {step} steps in {time.time() - start:.0f}s, final loss {sum(losses[-20:]) / len(losses[-20:]):.4f}")
    if heldout:
        # As a later turn of a chat reads its problem.
        for gap in (150, 300, 450):
            report(f"held-out exact match {gap} positions later: {exact_match(model, system, system_ids, heldout, gap=gap)}")

    with open(os.path.join(args.out, "loss.csv"), "w") as f:
        f.write("step,loss\n")
        for i, l in enumerate(losses):
            f.write(f"{i + 1},{l:.6f}\n")
    write_png(os.path.join(args.out, "loss.png"), losses)
    save_file(model.hf_state_dict(), os.path.join(args.out, "model", "model.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(args.out, "model", "config.json"), "w") as f:
        json.dump(hf_config(c), f, indent=1)
    log(f"wrote {args.out}")


if __name__ == "__main__":
    main()
