"""Token estimates for routing and admission when no tokenizer is at hand.

Code averages about 3.5-4 characters per token for BPE tokenizers of code models; we use 4
for predictions (an estimate, refined by the engine's reported usage) and never reject a
prompt on the estimate unless it is clearly over the model's context.
"""

from __future__ import annotations

CHARS_PER_TOKEN = 4.0


def estimate_tokens(text: str) -> int:
    return max(1, int(len(text) / CHARS_PER_TOKEN + 0.999))
