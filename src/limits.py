"""Size limits on text (the ``limits`` section of params.yaml), applied the same way wherever
text enters the pipeline: rollout and import leave out whole episodes, build and training leave
out action records. Characters are checked when text is read, tokens when a record is encoded
for training. Whatever is left out is counted by reason in that stage's metrics, so a single
runaway utterance neither crashes a stage (a 100k-character action made training allocate
24 GB) nor disappears silently.

Reasons: ``utterance_chars`` (a turn's text, or a record's action), ``prompt_chars`` (the chat
a policy turn was conditioned on, all message contents together), ``action_tokens`` and
``prompt_tokens`` (the same two, tokenised as training encodes them).
"""
from __future__ import annotations

from dataclasses import dataclass

CHAR_REASONS = ("utterance_chars", "prompt_chars")
TOKEN_REASONS = ("action_tokens", "prompt_tokens")
REASONS = CHAR_REASONS + TOKEN_REASONS


@dataclass
class Limits:
    max_utterance_chars: int  # one turn's text (a record's action) at read
    max_prompt_chars: int  # one policy turn's chat (all message contents) at read
    max_action_tokens: int  # an action's tokens (with its end token) at encoding
    max_prompt_tokens: int  # a prompt's tokens (chat template) at encoding

    def validate(self) -> str | None:
        if min(self.max_utterance_chars, self.max_prompt_chars, self.max_action_tokens,
               self.max_prompt_tokens) < 1:
            return "every limit must be >= 1"
        return None


def prompt_chars(messages: list[dict]) -> int:
    return sum(len(m.get("content", "")) for m in messages)


def turn_problem(text: str, messages: list[dict] | None, limits: Limits) -> str | None:
    """The character limit a turn (or record) breaks, or None."""
    if len(text) > limits.max_utterance_chars:
        return "utterance_chars"
    if messages is not None and prompt_chars(messages) > limits.max_prompt_chars:
        return "prompt_chars"
    return None


def episode_problem(episode: dict, limits: Limits) -> str | None:
    """The first character limit any turn of a rollout episode breaks, or None."""
    for turn in episode["turns"]:
        reason = turn_problem(turn["text"], turn.get("messages"), limits)
        if reason:
            return reason
    return None


def split_episodes(episodes, limits: Limits) -> tuple[list[dict], dict[str, int]]:
    """(episodes within the limits, count of the others by reason): rollout and import."""
    kept, left_out = [], dict.fromkeys(CHAR_REASONS, 0)
    for episode in episodes:
        reason = episode_problem(episode, limits)
        if reason:
            left_out[reason] += 1
        else:
            kept.append(episode)
    return kept, left_out


def token_problem(prompt_tokens: int, action_tokens: int, limits: Limits) -> str | None:
    if action_tokens > limits.max_action_tokens:
        return "action_tokens"
    if prompt_tokens > limits.max_prompt_tokens:
        return "prompt_tokens"
    return None


def records_within_limits(records: list[dict], limits: Limits,
                          tokenizer=None) -> tuple[list[dict], dict[str, int]]:
    """(training records within the limits, count of the others by reason): characters of the
    action and prompt, then, with a ``tokenizer``, their tokens as training encodes them."""
    kept, left_out = [], dict.fromkeys(REASONS if tokenizer is not None else CHAR_REASONS, 0)
    encoder = None
    if tokenizer is not None:
        from src.policy.chat import ChatFormat

        encoder = ChatFormat(tokenizer)
    for record in records:
        reason = turn_problem(record["action"], record["messages"], limits)
        if reason is None and encoder is not None:
            ids, start = encoder.encode_record(record)
            reason = token_problem(start, len(ids) - start, limits)
        if reason:
            left_out[reason] += 1
        else:
            kept.append(record)
    return kept, left_out
