"""The miniature policy: a BPE tokenizer and a tiny Llama, both made from scripted play.

The default profile's policy is not downloaded: ``corpus`` (stages/corpus.py) plays every game
with scripted players (src/games/scripted.py) and writes each policy move as the exact chat the
player saw plus its reply; this module trains a byte-level BPE tokenizer on that text and
pretrains a few-million-parameter causal LM on the replies (loss on reply tokens only). The
result is a policy that makes legal, varied moves and has no strategy: what ARIA's training
adds is then measurable in minutes on a CPU. Everything is a function of params and the
corpus: a rerun writes the same bytes.
"""
from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass
from pathlib import Path

import torch

CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


@dataclass
class MiniatureConfig:
    """``miniature`` in params.yaml: the scripted corpus, the tokenizer and the tiny LM."""
    episodes_per_game: int  # scripted episodes per game in the pretraining corpus
    seed: int  # corpus game seeds (disjoint from every other seed range: negative-free, 3000000..), init, batch order
    vocab_size: int  # BPE vocabulary (a byte-level alphabet of 256 plus merges and 3 special tokens)
    hidden_size: int  # model width
    layers: int  # transformer blocks
    heads: int  # attention heads (key/value heads: the same)
    intermediate_size: int  # MLP width
    max_positions: int  # longest prompt + reply in tokens
    steps: int  # optimizer steps
    batch_size: int  # replies per step
    lr: float  # AdamW peak learning rate (linear warm-up over 5 % of the steps, cosine decay to 10 %)
    weight_decay: float  # AdamW weight decay

    def validate(self) -> str | None:
        if min(self.episodes_per_game, self.hidden_size, self.layers, self.heads, self.steps,
               self.batch_size, self.intermediate_size) < 1:
            return "episodes_per_game, sizes, steps and batch_size must be >= 1"
        if self.hidden_size % self.heads:
            return f"hidden_size {self.hidden_size} must be a multiple of heads {self.heads}"
        if self.vocab_size < 300:
            return f"vocab_size {self.vocab_size} must be >= 300 (256 bytes + special tokens + merges)"
        if self.seed < 0:
            return f"seed {self.seed} must be >= 0"
        if not 0 < self.lr < 1:
            return f"lr {self.lr} must be in (0, 1)"
        return None


def rendered_texts(rows: list[dict]) -> list[str]:
    """Every string the tokenizer must encode well: each message and each reply."""
    texts = []
    for row in rows:
        texts.extend(m["content"] for m in row["messages"])
        texts.append(row["text"])
    return texts


def train_tokenizer(rows: list[dict], vocab_size: int):
    """A byte-level BPE (any text round-trips) with a ChatML template, as a HF fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    texts = rendered_texts(rows)
    core.train_from_iterator(texts, trainer=trainer, length=len(texts))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<|endoftext|>",
                                        eos_token="<|im_end|>", unk_token="<|endoftext|>",
                                        pad_token="<|endoftext|>")
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def build_model(cfg: MiniatureConfig, tokenizer):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=cfg.hidden_size,
                         intermediate_size=cfg.intermediate_size, num_hidden_layers=cfg.layers,
                         num_attention_heads=cfg.heads, num_key_value_heads=cfg.heads,
                         max_position_embeddings=cfg.max_positions, tie_word_embeddings=True,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(cfg.seed)
    return LlamaForCausalLM(config)


def encoded_examples(rows: list[dict], tokenizer, max_positions: int) -> tuple[list[tuple[list[int], int]], int]:
    """(ids, reply start) per row through the chat format the policy is played with; rows
    longer than ``max_positions`` are left out and counted."""
    from src.policy.chat import ChatFormat

    chat = ChatFormat(tokenizer)
    examples, too_long = [], 0
    for row in rows:
        ids, start = chat.encode(row["messages"], row["text"])
        if len(ids) > max_positions:
            too_long += 1
            continue
        examples.append((ids, start))
    return examples, too_long


def batch_tensors(batch: list[tuple[list[int], int]], pad_id: int):
    """(input ids, attention mask, reply mask): the reply mask marks the positions whose next
    token is a reply token (the only ones scored)."""
    width = max(len(ids) for ids, _ in batch)
    input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    scored = torch.zeros((len(batch), width), dtype=torch.bool)
    for row, (ids, start) in enumerate(batch):
        input_ids[row, :len(ids)] = torch.tensor(ids)
        mask[row, :len(ids)] = 1
        scored[row, start - 1:len(ids) - 1] = True
    return input_ids, mask, scored


def reply_loss(model, input_ids, mask, scored) -> torch.Tensor:
    """Next-token loss on the reply tokens, the output head applied at those positions only
    (a reply is ~10 of ~200 tokens: the head over every position would cost more than the
    transformer)."""
    hidden = model.model(input_ids=input_ids, attention_mask=mask).last_hidden_state
    logits = model.lm_head(hidden[scored])
    targets = input_ids[:, 1:][scored[:, :-1]]
    return torch.nn.functional.cross_entropy(logits, targets)


def length_batches(examples: list[tuple[list[int], int]], batch_size: int,
                   rng: random.Random) -> list[list[int]]:
    """One epoch of batches of similar lengths (little padding), in random order."""
    order = list(range(len(examples)))
    rng.shuffle(order)
    chunk = batch_size * 16  # sort within chunks: batches stay varied across the epoch
    batches = []
    for first in range(0, len(order), chunk):
        part = sorted(order[first:first + chunk], key=lambda i: len(examples[i][0]))
        batches += [part[i:i + batch_size] for i in range(0, len(part), batch_size)]
    rng.shuffle(batches)
    return batches


def learning_rate(cfg: MiniatureConfig, step: int) -> float:
    warmup = max(1, cfg.steps // 20)
    if step < warmup:
        return cfg.lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, cfg.steps - warmup)
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def pretrain(cfg: MiniatureConfig, rows: list[dict], progress: bool = True):
    """(model, tokenizer, metrics): the tokenizer trained on the corpus, the LM on its replies."""
    from tqdm import tqdm

    start_time = time.perf_counter()
    tokenizer = train_tokenizer(rows, cfg.vocab_size)
    examples, too_long = encoded_examples(rows, tokenizer, cfg.max_positions)
    if not examples:
        raise ValueError(f"miniature: no corpus row fits max_positions {cfg.max_positions}")
    model = build_model(cfg, tokenizer)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    order_rng = random.Random(cfg.seed)
    batches: list[list[int]] = []
    losses = []
    model.train()
    for step in tqdm(range(cfg.steps), desc="pretrain", disable=not progress, mininterval=5):
        if not batches:
            batches = length_batches(examples, cfg.batch_size, order_rng)
        batch = [examples[i] for i in batches.pop()]
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(cfg, step)
        loss = reply_loss(model, *batch_tensors(batch, tokenizer.pad_token_id))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses.append(loss.item())
    model.eval()
    tail = losses[-max(1, cfg.steps // 10):]
    metrics = {
        "corpus_rows": len(rows), "rows_too_long": too_long, "vocab_size": len(tokenizer),
        "tokens_per_reply": round(sum(len(i) - s for i, s in examples) / len(examples), 2),
        "tokens_per_example": round(sum(len(i) for i, _ in examples) / len(examples), 2),
        "first_loss": round(losses[0], 4), "final_loss": round(sum(tail) / len(tail), 4),
        "pretrain_seconds": round(time.perf_counter() - start_time, 2),
    }
    return model, tokenizer, metrics


def read_corpus(path: Path | str) -> list[dict]:
    from src.io_utils import read_jsonl

    return list(read_jsonl(path))


def corpus_summary(rows: list[dict]) -> dict:
    """Rows, distinct replies and the intention mix per game: what the base was taught."""
    summary: dict[str, dict] = {}
    for row in rows:
        game = summary.setdefault(row["game"], {"rows": 0, "distinct_replies": set(), "intentions": {}})
        game["rows"] += 1
        game["distinct_replies"].add(row["text"])
        game["intentions"][row["intention"]] = game["intentions"].get(row["intention"], 0) + 1
    return {name: {"rows": g["rows"], "distinct_replies": len(g["distinct_replies"]),
                   "intentions": dict(sorted(g["intentions"].items()))}
            for name, g in summary.items()}


