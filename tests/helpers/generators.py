"""What a fake generator without a tokenizer counts: slm's own estimates for a model it cannot tokenise,
so a fake implements the whole slm.generation.backends.Generator protocol."""

from __future__ import annotations

from slm.generation.backends import estimated_prompt_tokens, estimated_tokens


class EstimatedTokens:
    def prompt_tokens(self, messages: list[dict]) -> int:
        return estimated_prompt_tokens(messages)

    def count_tokens(self, text: str) -> int:
        return estimated_tokens(text)

    def last_generated_tokens(self) -> int:
        return 0  # not counted: the answerer falls back to count_tokens
