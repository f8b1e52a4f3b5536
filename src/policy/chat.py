"""Chat encoding shared by generation and training: a record is trained on exactly the tokens
the model was conditioned on when it acted (docs/method.md §9). Needs the tokenizer only, no
model."""
from __future__ import annotations


class ChatFormat:
    """Token ids of a chat prompt and of an action, through the tokenizer's chat template."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.end_ids = sorted({tokenizer.eos_token_id, *self._im_end_ids()})

    def _im_end_ids(self) -> list[int]:
        tid = self.tokenizer.convert_tokens_to_ids("<|im_end|>")
        return [tid] if isinstance(tid, int) and tid != self.tokenizer.unk_token_id else []

    def prompt_ids(self, messages: list[dict]) -> list[int]:
        ids = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        if isinstance(ids, dict) or hasattr(ids, "keys"):
            ids = ids["input_ids"]
        return list(ids)

    def action_ids(self, action: str, truncated: bool = False,
                   sampled: list[int] | None = None) -> list[int]:
        """The action's tokens (``sampled``: the tokens the policy generated, else the text
        tokenised) plus the end-of-turn token the model emitted to stop (none when the reply
        was cut at ``max_new_tokens``: the model never chose to stop there)."""
        ids = list(sampled) if sampled is not None else \
            self.tokenizer(action, add_special_tokens=False)["input_ids"]
        return ids if truncated else ids + [self.end_ids[-1]]

    def encode(self, messages: list[dict], action: str, truncated: bool = False,
               sampled: list[int] | None = None) -> tuple[list[int], int]:
        """(prompt + action token ids, index where the action starts)."""
        prompt = self.prompt_ids(messages)
        return prompt + self.action_ids(action, truncated, sampled), len(prompt)

    def encode_record(self, record: dict) -> tuple[list[int], int]:
        """:meth:`encode` of a training record or policy action: its ``action_ids`` when it has
        them (the tokens the policy generated), else its text tokenised."""
        return self.encode(record["messages"], record["action"], record.get("truncated", False),
                           record.get("action_ids"))


def tokenised_from_text(records: list[dict]) -> int:
    """How many records carry no sampled tokens, so training scores their re-tokenised text
    (imported episodes), which need not be what the policy generated."""
    return sum(record.get("action_ids") is None for record in records)
