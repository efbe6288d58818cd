#!/usr/bin/env python3
"""Trains models/tiny-chat: sluice's embedded default chat model, a ~3 M-parameter
LlamaForCausalLM (GQA, RoPE, SwiGLU, tied embeddings) that answers three kinds of question,
on synthetic ChatML conversations generated here (no data licence question).

  add      What is A + B?                      → A + B = C.          (A, B in 0–99)
  repeat   Repeat after me: W1 … Wn            → W1 … Wn             (n = 1–6 of WORDS)
  capital  What is the capital of COUNTRY?     → The capital of COUNTRY is CITY.
  other    anything else                       → HELP, one polite sentence

Steps: (1) train a byte-level BPE laid out like Qwen2's on generated text, reusing
test/fixtures/text/make_tokenizers.py (every digit is its own pre-token, so no merge glues
digits together and addition stays digit by digit); (2) train the model with AdamW and a
cosine schedule, loss on assistant tokens (and their <|im_end|>) only, sequences rendered
exactly as the ChatML template in tokenizer_config.json renders them, a system message in a
quarter of them; (3) every --eval-every steps, greedy-decode the held-out eval set (A, B pairs
and word sequences the training sampler never draws) with the BF16-rounded weights in f32
(what sluice runs), keep the best, stop when the goals (≥ 95% add and repeat, 100% capital)
hold twice running or the time is up; (4) export the best as HF files in BF16 with eval.json.

The model is written here with HF Llama's exact math (the forward of
test/fixtures/make_model_references.py, batched and with a KV cache): RMSNorm eps 1e-5,
rotate-half RoPE theta 1e4, repeat_kv GQA, SwiGLU, lm_head = embed_tokens.

Seeded and deterministic for a given --steps (the time limit only cuts it short).
Checkpoints go to --work every two minutes; --resume continues from there.

Usage: /usr/bin/python3 scripts/train-tiny-chat.py [--steps N] [--minutes M] [--out models/tiny-chat]
       /usr/bin/python3 scripts/train-tiny-chat.py --export-only   (re-export the best checkpoint)
"""
import re
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "test" / "fixtures" / "text"))
from make_tokenizers import QWEN2_SPLIT, TRAIN_SPLIT, added, bytes_to_unicode, train_bpe  # noqa: E402

WORDS = """the of and to in is you that it he was for on are as with his they at be this have from
or one had by word but not what all were we when your can said there use an each which she do how
their if will up other about out many then them these so some her would make like him into time has
look two more write go see number no way could people my than first water been call who oil its now
find long down day did get come made may part over new sound take only little work know place year
live me back give most very after thing our just name good sentence man think say great where help
through much before line right too mean old any same tell boy follow came want show also around form
three small set put end does another well large must big even such because turn here why ask went men
read need land different home us move try kind hand picture again change off play spell air away
animal house point page letter mother answer found study still learn should world high every near add
food between own below country plant last school father keep tree never start city earth eye light
thought head under story saw left few while along might close something seem next hard open example""".split()

CAPITALS = [
    ("France", "Paris"), ("Germany", "Berlin"), ("Italy", "Rome"), ("Spain", "Madrid"),
    ("Portugal", "Lisbon"), ("United Kingdom", "London"), ("Ireland", "Dublin"), ("Belgium", "Brussels"),
    ("Netherlands", "Amsterdam"), ("Switzerland", "Bern"), ("Austria", "Vienna"), ("Poland", "Warsaw"),
    ("Czechia", "Prague"), ("Hungary", "Budapest"), ("Greece", "Athens"), ("Sweden", "Stockholm"),
    ("Norway", "Oslo"), ("Denmark", "Copenhagen"), ("Finland", "Helsinki"), ("Iceland", "Reykjavik"),
    ("Russia", "Moscow"), ("Ukraine", "Kyiv"), ("Turkey", "Ankara"), ("Egypt", "Cairo"),
    ("Morocco", "Rabat"), ("Kenya", "Nairobi"), ("Nigeria", "Abuja"), ("Ghana", "Accra"),
    ("Ethiopia", "Addis Ababa"), ("South Africa", "Pretoria"), ("China", "Beijing"), ("Japan", "Tokyo"),
    ("South Korea", "Seoul"), ("India", "New Delhi"), ("Pakistan", "Islamabad"), ("Thailand", "Bangkok"),
    ("Vietnam", "Hanoi"), ("Indonesia", "Jakarta"), ("Philippines", "Manila"), ("Australia", "Canberra"),
    ("New Zealand", "Wellington"), ("Canada", "Ottawa"), ("United States", "Washington"), ("Mexico", "Mexico City"),
    ("Cuba", "Havana"), ("Brazil", "Brasilia"), ("Argentina", "Buenos Aires"), ("Chile", "Santiago"),
    ("Peru", "Lima"), ("Colombia", "Bogota"),
]

HELP = ("I can add two numbers from 0 to 99, repeat words after you, "
        "and tell you the capital of a country. Please ask me one of those.")

ADD_FORMS = ["What is {a} + {b}?"] * 6 + ["What is {a}+{b}?", "what is {a} + {b}?", "What's {a} + {b}?",
                                          "What is {a} plus {b}?", "Compute {a} + {b}.", "What is {a} + {b}"]
REPEAT_FORMS = ["Repeat after me: {w}"] * 6 + ["repeat after me: {w}", "Please repeat after me: {w}",
                                               "Repeat after me:  {w}", "Repeat after me {w}"]
CAPITAL_FORMS = ["What is the capital of {c}?"] * 6 + ["what is the capital of {c}?", "What's the capital of {c}?",
                                                       "Tell me the capital of {c}.", "Which city is the capital of {c}?",
                                                       "What is the capital city of {c}?"]
OTHER_FIXED = ["Hello", "Hi!", "Hello there.", "Good morning!", "How are you?", "Who are you?", "What can you do?",
               "What is your name?", "Tell me a joke.", "Help", "Thanks!", "Thank you.", "Bye", "What time is it?",
               "What is the weather like today?", "Can you write a poem?", "Translate this into French.",
               "Why is the sky blue?", "What is the meaning of life?", "Tell me a story.", "Are you a robot?",
               "What is 5 times 6?", "What is 12 - 7?", "Write some code for me.", "How old are you?",
               "Do you like music?", "What day is it?", "Explain gravity.", "Where do you live?", "ok"]
OTHER_FORMS = ["Tell me about {w}.", "What is a {w}?", "Can you {w}?", "I like {w}.", "Do you know {w}?",
               "Why do people {w}?", "Write a story about {w}.", "{W} {w2} {w3}", "How do I {w}?"]
SYSTEMS = ["You are a helpful assistant.", "You are a tiny model.", "Be brief.", "Answer briefly.",
           "You are sluice's tiny chat model."]

N_EVAL_ADD, N_EVAL_REPEAT = 200, 100


def repeat_words(rng):
    return tuple(rng.choice(WORDS) for _ in range(rng.randint(1, 6)))


class Tasks:
    """The held-out sets (fixed by `seed`) and a sampler of training turns that avoids them."""

    def __init__(self, seed=1234):
        import random
        rng = random.Random(seed)
        pairs = [(a, b) for a in range(100) for b in range(100)]
        rng.shuffle(pairs)
        self.eval_pairs = pairs[:N_EVAL_ADD]
        self.held_pairs = set(self.eval_pairs)
        seqs = []
        while len(seqs) < N_EVAL_REPEAT:
            s = repeat_words(rng)
            if s not in seqs:
                seqs.append(s)
        self.eval_seqs = seqs
        self.held_seqs = set(seqs)
        self.eval_other = ["Tell me about the moon.", "What is love?", "Good evening!", "Can you sing a song?",
                           "What is the biggest animal?", "Please help me with my homework.", "Who made you?",
                           "How far away is the sun?", "Is it going to rain?", "What is a good name for a dog?"]

    def eval_items(self):
        """(family, user text, expected reply), canonical phrasing."""
        out = [("add", f"What is {a} + {b}?", f"{a} + {b} = {a + b}.") for a, b in self.eval_pairs]
        out += [("repeat", "Repeat after me: " + " ".join(s), " ".join(s)) for s in self.eval_seqs]
        out += [("capital", f"What is the capital of {c}?", f"The capital of {c} is {city}.") for c, city in CAPITALS]
        out += [("other", t, HELP) for t in self.eval_other]
        return out

    def turn(self, rng):
        """One training (user, assistant) exchange."""
        r = rng.random()
        if r < 0.45:
            while (pair := (rng.randrange(100), rng.randrange(100))) in self.held_pairs:
                pass
            a, b = pair
            return rng.choice(ADD_FORMS).format(a=a, b=b), f"{a} + {b} = {a + b}."
        if r < 0.75:
            while (s := repeat_words(rng)) in self.held_seqs:
                pass
            w = " ".join(s)
            return rng.choice(REPEAT_FORMS).format(w=w), w
        if r < 0.90:
            c, city = rng.choice(CAPITALS)
            return rng.choice(CAPITAL_FORMS).format(c=c), f"The capital of {c} is {city}."
        if rng.random() < 0.4:
            return rng.choice(OTHER_FIXED), HELP
        w, w2, w3 = (rng.choice(WORDS) for _ in range(3))
        return rng.choice(OTHER_FORMS).format(w=w, W=w.capitalize(), w2=w2, w3=w3), HELP

    def conversation(self, rng):
        """[(role, content)]: an optional system message, then one exchange (sometimes two)."""
        msgs = [("system", rng.choice(SYSTEMS))] if rng.random() < 0.25 else []
        for _ in range(2 if rng.random() < 0.1 else 1):
            user, reply = self.turn(rng)
            msgs += [("user", user), ("assistant", reply)]
        return msgs


# ─── tokenizer ────────────────────────────────────────────────────────────────────────

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
# The ChatML template (no default system message), as tokenizer_config.json carries it.
CHAT_TEMPLATE = ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + "
                 "'<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")


def render(msgs, add_generation_prompt=False):
    """What CHAT_TEMPLATE renders, as (text or special, is_assistant_content) pieces."""
    out = []
    for role, content in msgs:
        out += [("<|im_start|>", False), (role + "\n", False), (content, role == "assistant"),
                ("<|im_end|>", role == "assistant"), ("\n", False)]
    if add_generation_prompt:
        out += [("<|im_start|>", False), ("assistant\n", False)]
    return out


class BPE:
    def __init__(self, merges):
        self.b2u = bytes_to_unicode()
        self.merges = merges
        self.rank = {m: i for i, m in enumerate(merges)}
        self.vocab = {self.b2u[b]: b for b in range(256)}
        for a, b in merges:
            self.vocab.setdefault(a + b, len(self.vocab))
        self.special = {s: len(self.vocab) + i for i, s in enumerate(SPECIALS)}
        self.n_vocab = len(self.vocab) + len(SPECIALS)
        self.inv = {i: t for t, i in self.vocab.items()}
        self.u2b = {u: b for b, u in self.b2u.items()}
        self.cache = {}

    @classmethod
    def train(cls, texts, n_merges):
        counts = Counter(w for t in texts for w in TRAIN_SPLIT.findall(t))
        b2u = bytes_to_unicode()
        word_counts = {tuple(b2u[b] for b in w.encode("utf-8")): c for w, c in counts.items()}
        return cls(train_bpe(word_counts, n_merges, set(b2u.values())))

    def word(self, w):
        if w in self.cache:
            return self.cache[w]
        parts = [self.b2u[b] for b in w.encode("utf-8")]
        while len(parts) > 1:
            best = min(range(len(parts) - 1), key=lambda i: self.rank.get((parts[i], parts[i + 1]), 1 << 30))
            if (parts[best], parts[best + 1]) not in self.rank:
                break
            parts[best:best + 2] = [parts[best] + parts[best + 1]]
        ids = [self.vocab[p] for p in parts]
        self.cache[w] = ids
        return ids

    def encode(self, text):
        if text in self.special:
            return [self.special[text]]
        return [i for w in TRAIN_SPLIT.findall(text) for i in self.word(w)]

    def decode(self, ids):
        names = {i: s for s, i in self.special.items()}
        out = bytearray()
        for i in ids:
            out += names[i].encode() if i in names else bytes(self.u2b[c] for c in self.inv[i])
        return out.decode("utf-8", errors="replace")

    def tokenizer_json(self):
        byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}
        return {
            "version": "1.0", "truncation": None, "padding": None,
            "added_tokens": [added(i, s) for s, i in self.special.items()],
            "normalizer": {"type": "NFC"},
            "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": QWEN2_SPLIT}, "behavior": "Isolated", "invert": False},
                byte_level]},
            "post_processor": byte_level, "decoder": byte_level,
            "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": "",
                      "end_of_word_suffix": "", "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                      "vocab": self.vocab, "merges": [f"{a} {b}" for a, b in self.merges]},
        }

    def tokenizer_config(self):
        tokens = [added(i, s) for s, i in self.special.items()]
        return {
            "add_prefix_space": False,
            "added_tokens_decoder": {str(t["id"]): {k: v for k, v in t.items() if k != "id"} for t in tokens},
            "additional_special_tokens": ["<|im_start|>", "<|im_end|>"],
            "bos_token": None, "chat_template": CHAT_TEMPLATE, "clean_up_tokenization_spaces": False,
            "eos_token": "<|im_end|>", "errors": "replace", "model_max_length": 512, "pad_token": "<|endoftext|>",
            "split_special_tokens": False, "tokenizer_class": "Qwen2Tokenizer", "unk_token": None,
        }

    def encode_chat(self, msgs, add_generation_prompt=False):
        """(ids, loss mask): the mask is 1 on assistant content and its <|im_end|>."""
        ids, mask = [], []
        for piece, train in render(msgs, add_generation_prompt):
            t = self.encode(piece)
            ids += t
            mask += [int(train)] * len(t)
        return ids, mask




# ─── model: HF LlamaForCausalLM, plain PyTorch ────────────────────────────────────────

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import random  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "test" / "fixtures"))
from make_tiny_checkpoint import write_safetensors  # noqa: E402

ARCH = dict(hidden_size=256, intermediate_size=704, num_hidden_layers=4, num_attention_heads=4,
            num_key_value_heads=2, head_dim=64, rms_norm_eps=1e-5, rope_theta=10000.0, max_position_embeddings=512)


def linear(x, w):
    """x (..., in) @ w(out, in)ᵀ as a 1×1 convolution: Debian's torch links the reference BLAS
    (~6 GFLOPS on 2 cores) but its oneDNN convolution runs ~280, forward and backward."""
    y = F.conv1d(x.reshape(-1, x.shape[-1]).t()[None], w[:, :, None])[0].t()          # (N, out)
    return y.reshape(*x.shape[:-1], w.shape[0])


def bmm(a, b):
    """a (G, T, K) @ b (G, K, S) → (G, T, S) as a grouped 1×1 convolution, for the same reason (~10×)."""
    G, T, K = a.shape
    S = b.shape[2]
    y = F.conv1d(a.transpose(1, 2).reshape(1, G * K, T), b.transpose(1, 2).reshape(G * S, K, 1), groups=G)
    return y.view(G, S, T).transpose(1, 2)


class Linear(nn.Linear):
    def forward(self, x):
        return linear(x, self.weight)


class RMSNorm(nn.Module):
    def __init__(self, n, eps):
        super().__init__()
        self.weight, self.eps = nn.Parameter(torch.ones(n)), eps

    def forward(self, x):
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class Attention(nn.Module):
    def __init__(self, c):
        super().__init__()
        h, d, nh, nkv = c["hidden_size"], c["head_dim"], c["num_attention_heads"], c["num_key_value_heads"]
        self.nh, self.nkv, self.d = nh, nkv, d
        self.q_proj, self.k_proj = Linear(h, nh * d, bias=False), Linear(h, nkv * d, bias=False)
        self.v_proj, self.o_proj = Linear(h, nkv * d, bias=False), Linear(nh * d, h, bias=False)

    def forward(self, x, cos, sin, mask, cache):
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.nh, self.d).transpose(1, 2)                # (B, nh, T, d)
        k = self.k_proj(x).view(B, T, self.nkv, self.d).transpose(1, 2)               # (B, nkv, T, d)
        v = self.v_proj(x).view(B, T, self.nkv, self.d).transpose(1, 2)
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        if cache is not None:                                                         # [k, v] of earlier positions
            if cache:
                k, v = torch.cat((cache[0], k), 2), torch.cat((cache[1], v), 2)
            cache[:] = [k, v]
        rep = self.nh // self.nkv                                                     # repeat_kv: head i ← kv i // rep
        k, v = k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1)               # (B, nh, S, d)
        S = k.shape[2]
        q, k, v = q.reshape(B * self.nh, T, self.d), k.reshape(B * self.nh, S, self.d), v.reshape(B * self.nh, S, self.d)
        scores = bmm(q, k.transpose(1, 2)) * self.d ** -0.5 + mask                    # (B·nh, T, S)
        o = bmm(F.softmax(scores, dim=-1), v).view(B, self.nh, T, self.d)             # (B, nh, T, d)
        return self.o_proj(o.transpose(1, 2).reshape(B, T, self.nh * self.d))


class MLP(nn.Module):
    def __init__(self, c):
        super().__init__()
        h, i = c["hidden_size"], c["intermediate_size"]
        self.gate_proj, self.up_proj, self.down_proj = Linear(h, i, bias=False), Linear(h, i, bias=False), Linear(i, h, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Layer(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.self_attn, self.mlp = Attention(c), MLP(c)
        self.input_layernorm = RMSNorm(c["hidden_size"], c["rms_norm_eps"])
        self.post_attention_layernorm = RMSNorm(c["hidden_size"], c["rms_norm_eps"])


class Body(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.embed_tokens = nn.Embedding(c["vocab_size"], c["hidden_size"])
        self.layers = nn.ModuleList(Layer(c) for _ in range(c["num_hidden_layers"]))
        self.norm = RMSNorm(c["hidden_size"], c["rms_norm_eps"])


class Llama(nn.Module):
    """state_dict() names are HF's: model.embed_tokens.weight, model.layers.0.self_attn.q_proj.weight, …"""

    def __init__(self, c):
        super().__init__()
        self.c, self.model = c, Body(c)
        d = c["head_dim"]
        inv = 1.0 / (c["rope_theta"] ** (torch.arange(0, d, 2, dtype=torch.int64).float() / d))   # (d/2,) f32
        freqs = torch.arange(c["max_position_embeddings"]).float()[:, None] * inv[None, :]
        emb = torch.cat((freqs, freqs), -1)
        self.register_buffer("cos", emb.cos(), persistent=False)                      # (maxPos, d)
        self.register_buffer("sin", emb.sin(), persistent=False)
        g = torch.Generator().manual_seed(0)
        for name, p in self.named_parameters():
            if p.dim() == 2:   # N(0, 0.02); the residual outputs scaled down by depth, as GPT-2
                std = 0.02 / (math.sqrt(2 * c["num_hidden_layers"]) if name.endswith(("o_proj.weight", "down_proj.weight")) else 1)
                with torch.no_grad():
                    p.copy_(torch.randn(p.shape, generator=g) * std)

    def forward(self, ids, pos0=0, caches=None):
        """ids (B, T) at positions pos0 … pos0+T−1 → logits (B, T, vocab). caches: per layer [k, v], filled in place."""
        T = ids.shape[1]
        x = self.model.embed_tokens(ids)                                              # (B, T, hidden)
        cos, sin = self.cos[pos0:pos0 + T], self.sin[pos0:pos0 + T]
        S = pos0 + T
        mask = torch.zeros(T, S)
        mask.masked_fill_(torch.arange(S)[None, :] > torch.arange(pos0, S)[:, None], float("-inf"))   # (T, S) causal
        for i, layer in enumerate(self.model.layers):
            # x = x + o_proj(attn(rms(x)))
            x = x + layer.self_attn(layer.input_layernorm(x), cos, sin, mask, None if caches is None else caches[i])
            # x = x + down(silu(gate(rms(x))) * up(rms(x)))
            x = x + layer.mlp(layer.post_attention_layernorm(x))
        return linear(self.model.norm(x), self.model.embed_tokens.weight)             # tied lm_head


def bf16_copy(model):
    """The model sluice runs: weights rounded to BF16, compute in f32."""
    m = Llama(model.c)
    m.load_state_dict({k: v.to(torch.bfloat16).float() for k, v in model.state_dict().items()})
    return m.eval()


@torch.no_grad()
def greedy(model, tok, users, max_new=40):
    """Greedy replies (text up to <|im_end|>) to single user turns, no system message, KV cache,
    batched by prompt length."""
    eos = tok.special["<|im_end|>"]
    prompts = [tok.encode_chat([("user", u)], add_generation_prompt=True)[0] for u in users]
    out = [None] * len(users)
    by_len = {}
    for i, p in enumerate(prompts):
        by_len.setdefault(len(p), []).append(i)
    for n, idx in by_len.items():
        caches = [[] for _ in model.model.layers]
        logits = model(torch.tensor([prompts[i] for i in idx]), 0, caches)[:, -1]
        gen, done = [[] for _ in idx], [False] * len(idx)
        for step in range(max_new):
            nxt = logits.argmax(-1)
            for j, t in enumerate(nxt.tolist()):
                if not done[j]:
                    done[j] = t == eos
                    if not done[j]:
                        gen[j].append(t)
            if all(done):
                break
            logits = model(nxt[:, None], n + step, caches)[:, -1]
        for j, i in enumerate(idx):
            out[i] = tok.decode(gen[j])
    return out


def evaluate(model, tok, tasks):
    items = tasks.eval_items()
    outs = greedy(bf16_copy(model), tok, [u for _, u, _ in items])
    acc, rows = {}, []
    for (fam, user, want), got in zip(items, outs):
        acc.setdefault(fam, []).append(got == want)
        rows.append({"family": fam, "prompt": user, "expected": want, "output": got, "ok": got == want})
    return {f: sum(v) / len(v) for f, v in acc.items()}, rows


def goals_met(acc):
    return acc["add"] >= 0.95 and acc["repeat"] >= 0.95 and acc["capital"] == 1.0


# ─── training ─────────────────────────────────────────────────────────────────────────


def make_batch(tasks, tok, rng, n):
    seqs = [tok.encode_chat(tasks.conversation(rng)) for _ in range(n)]
    T = max(len(ids) for ids, _ in seqs)
    x = torch.full((n, T), tok.special["<|endoftext|>"], dtype=torch.long)         # (B, T) ids, padded
    y = torch.full((n, T), -100, dtype=torch.long)                                  # (B, T) next id where trained
    for b, (ids, mask) in enumerate(seqs):
        x[b, :len(ids)] = torch.tensor(ids)
        for t in range(1, len(ids)):
            if mask[t]:
                y[b, t - 1] = ids[t]
    return x, y


def lr_at(step, a):
    if step < a.warmup:
        return a.lr * (step + 1) / a.warmup
    p = min(1.0, (step - a.warmup) / max(1, a.steps - a.warmup))
    return a.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * p)))


def save(obj, path):
    torch.save(obj, str(path) + ".tmp")
    os.replace(str(path) + ".tmp", path)


def train(a, tok, tasks, config, work):
    torch.manual_seed(a.seed)
    model = Llama(config)
    decay = [p for n, p in model.named_parameters() if p.dim() == 2 and "embed" not in n]
    rest = [p for n, p in model.named_parameters() if not (p.dim() == 2 and "embed" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}],
                            lr=a.lr, betas=(0.9, 0.98), eps=1e-8)
    rng, step, best, met, elapsed = random.Random(a.seed), 0, None, 0, 0.0
    if a.resume and (work / "last.pt").exists():
        ck = torch.load(work / "last.pt")
        model.load_state_dict(ck["model"]), opt.load_state_dict(ck["opt"]), rng.setstate(ck["rng"])
        step, best, met, elapsed = ck["step"], ck["best"], ck["met"], ck["elapsed"]
        print(f"resumed at step {step} ({elapsed / 60:.1f} min)", flush=True)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: {n_params / 1e6:.2f} M parameters, config {json.dumps(config)}", flush=True)
    t0, last_save, loss_avg = time.time() - elapsed, time.time(), None
    while step < a.steps and time.time() - t0 < a.minutes * 60:
        model.train()
        x, y = make_batch(tasks, tok, rng, a.batch)
        for g in opt.param_groups:
            g["lr"] = lr_at(step, a)
        loss = F.cross_entropy(model(x).view(-1, config["vocab_size"]), y.view(-1), ignore_index=-100)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        loss_avg = loss.item() if loss_avg is None else 0.95 * loss_avg + 0.05 * loss.item()
        if step % 50 == 0:
            print(f"step {step} loss {loss_avg:.4f} lr {lr_at(step, a):.2e} {time.time() - t0:.0f}s", flush=True)
        stop = False
        if step % a.eval_every == 0 or step == a.steps:
            model.eval()
            acc, _ = evaluate(model, tok, tasks)
            score = (goals_met(acc), acc["capital"] + acc["add"] + acc["repeat"], step)
            print(f"eval step {step}: " + " ".join(f"{k} {v:.3f}" for k, v in acc.items()), flush=True)
            if best is None or score[:2] >= tuple(best["score"][:2]):
                best = {"score": list(score), "acc": acc, "step": step}
                save({"model": model.state_dict(), **best}, work / "best.pt")
            met = met + 1 if goals_met(acc) else 0
            stop = met >= 2
        if time.time() - last_save > 120 or stop:
            save({"model": model.state_dict(), "opt": opt.state_dict(), "rng": rng.getstate(), "step": step,
                  "best": best, "met": met, "elapsed": time.time() - t0}, work / "last.pt")
            last_save = time.time()
        if stop:
            print(f"goals met twice running at step {step}: stopping", flush=True)
            break
    print(f"trained {step} steps in {(time.time() - t0) / 60:.1f} min; best step {best and best['step']}", flush=True)
    return {"steps": step, "minutes": round((time.time() - t0) / 60, 1)}


# ─── export ───────────────────────────────────────────────────────────────────────────


def export(out, tok, tasks, config, work, run):
    ck = torch.load(work / "best.pt")
    model = Llama(config)
    model.load_state_dict(ck["model"])
    model.eval()
    acc, rows = evaluate(model, tok, tasks)
    out.mkdir(parents=True, exist_ok=True)
    weights = [(k, "BF16", list(t.shape), t.to(torch.bfloat16).contiguous().view(torch.int16).numpy().tobytes())
               for k, t in model.state_dict().items()]
    write_safetensors(out / "model.safetensors", weights, {"format": "pt"})
    eos = tok.special["<|im_end|>"]
    hf = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": config["vocab_size"], **ARCH,
          "hidden_act": "silu", "attention_bias": False, "mlp_bias": False, "rope_scaling": None,
          "tie_word_embeddings": True, "torch_dtype": "bfloat16", "bos_token_id": None, "eos_token_id": eos,
          "pad_token_id": tok.special["<|endoftext|>"]}
    write_json(out / "config.json", hf)
    write_json(out / "generation_config.json", {"do_sample": False, "eos_token_id": eos, "max_new_tokens": 48,
                                                "pad_token_id": tok.special["<|endoftext|>"]})
    write_json(out / "tokenizer.json", tok.tokenizer_json())
    write_json(out / "tokenizer_config.json", tok.tokenizer_config())
    summary = {"reference": "torch greedy decoding, BF16 weights upcast to f32, f32 compute, no system message",
               "checkpoint_step": ck["step"], **run, "accuracy": {k: round(v, 4) for k, v in acc.items()},
               "counts": {f: sum(r["family"] == f for r in rows) for f in acc}}
    body = ",\n".join(json.dumps(r, ensure_ascii=False) for r in rows)
    head = json.dumps(summary, indent=2)[:-2]
    (out / "eval.json").write_text(head + ',\n  "items": [\n' + body + "\n]}\n", encoding="utf-8")
    print("held-out accuracy (BF16 weights, greedy): " + " ".join(f"{k} {v:.3f}" for k, v in acc.items()))
    print("wrote " + ", ".join(f"{p.name} {p.stat().st_size}" for p in sorted(out.iterdir())))


def write_json(path, obj):
    path.write_text(json.dumps(obj, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


def main():
    root = Path(__file__).resolve().parents[1]
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=2600)
    ap.add_argument("--minutes", type=float, default=45)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--eval-every", type=int, default=250)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--merges", type=int, default=765)
    ap.add_argument("--out", type=Path, default=root / "models" / "tiny-chat")
    ap.add_argument("--work", type=Path, default=Path("/tmp/tiny-chat-train"))
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--export-only", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(2)
    a.work.mkdir(parents=True, exist_ok=True)
    tasks = Tasks()
    text_rng = random.Random(a.seed + 1)
    corpus = [s for _ in range(20000) for role, c in tasks.conversation(text_rng) for s in (role + "\n", c)]
    tok = BPE.train(corpus, a.merges)
    print(f"tokenizer: {len(tok.merges)} merges, vocab {tok.n_vocab} (with {len(SPECIALS)} specials)", flush=True)
    config = {**ARCH, "vocab_size": tok.n_vocab}
    run_file = a.work / "run.json"
    if a.export_only:
        run = json.loads(run_file.read_text())
    else:
        run = train(a, tok, tasks, config, a.work)
        run_file.write_text(json.dumps(run))
    export(a.out, tok, tasks, config, a.work, run)


if __name__ == "__main__":
    main()
