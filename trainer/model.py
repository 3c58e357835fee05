"""Model and tokenizer loading: a real checkpoint by HF id/path, or a tiny one built
locally so tests, the demo and CPU benchmarks never touch the network.

"tiny" is a Qwen2-architecture causal LM (the family the swarm trains) with random
weights, paired with a character-level tokenizer built in-process with `tokenizers`.
The answer/think tags are single tokens, so a random model emits `<answer>` with a
probability of about 1/len(vocab) per token: enough reward signal for GRPO to move
a tiny model within a few rounds. "tiny:qwen2.5-0.5b" keeps Qwen2.5-0.5B's transformer
(24 layers, hidden 896, 14 heads, 2 KV heads) for throughput benchmarks without a
download, with its vocabulary sized to the tokenizer's: a 151,936-row head over a
~100-token tokenizer samples ids that decode to nothing, so every reward is 0 and a
benchmark of it times no learning. The embedding and head are therefore ~0.1M
parameters instead of 136M (358M in all instead of 494M); say so beside its figures.
"""

from __future__ import annotations

import string
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

TINY = "tiny"
TINY_QWEN_05B = "tiny:qwen2.5-0.5b"
TAG_TOKENS = ("<answer>", "</answer>", "<think>", "</think>")
PAD, EOS, UNK, IM_START = "<pad>", "<|im_end|>", "<unk>", "<|im_start|>"
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}

_TINY_SHAPE: dict[str, Any] = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 512,
}
_QWEN_05B_SHAPE: dict[str, Any] = {  # the real vocab_size 151936 is replaced, see above
    "hidden_size": 896,
    "intermediate_size": 4864,
    "num_hidden_layers": 24,
    "num_attention_heads": 14,
    "num_key_value_heads": 2,
    "max_position_embeddings": 32768,
    "rope_theta": 1000000.0,
    "rms_norm_eps": 1e-6,
}


def build_tiny_tokenizer() -> PreTrainedTokenizerBase:
    """A character-level tokenizer with a Qwen-style chat template; no download."""
    from tokenizers import Tokenizer, decoders, models
    from transformers import PreTrainedTokenizerFast

    specials = [PAD, EOS, UNK, IM_START]
    chars = [c for c in string.printable if c not in "\r\x0b\x0c"]
    vocab = {tok: i for i, tok in enumerate([*specials, *chars])}
    core = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=UNK))
    core.decoder = decoders.Fuse()
    tok = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=core,
        pad_token=PAD,
        eos_token=EOS,
        unk_token=UNK,
        additional_special_tokens=[IM_START],
        padding_side="left",
    )
    tok.add_tokens(list(TAG_TOKENS))  # plain added tokens: kept by skip_special_tokens
    tok.chat_template = CHAT_TEMPLATE
    return tok


def _torch_dtype(dtype: str) -> Any:
    import torch

    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
    return getattr(torch, _DTYPES[dtype])


def build_tiny_model(vocab_size: int, *, shape: str = TINY, seed: int = 0) -> PreTrainedModel:
    """A Qwen2 causal LM with random weights, identical for the same seed and shape."""
    import torch
    from transformers import AutoModelForCausalLM, Qwen2Config

    dims = {**(_QWEN_05B_SHAPE if shape == TINY_QWEN_05B else _TINY_SHAPE), "vocab_size": vocab_size}
    config = Qwen2Config(**dims, tie_word_embeddings=True, use_cache=True)
    torch.manual_seed(seed)
    model: PreTrainedModel = AutoModelForCausalLM.from_config(config)  # type: ignore[no-untyped-call]
    return model


def load_model_and_tokenizer(
    model: str,
    *,
    device: str = "cpu",
    dtype: str = "fp32",
    hf_token: str | None = None,
    seed: int = 0,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """`tiny`, `tiny:qwen2.5-0.5b`, or an HF id / local path (token never logged)."""
    torch_dtype = _torch_dtype(dtype)
    if model in (TINY, TINY_QWEN_05B):
        tokenizer = build_tiny_tokenizer()
        lm = build_tiny_model(len(tokenizer), shape=model, seed=seed)
        lm.generation_config.pad_token_id = tokenizer.pad_token_id
        lm.generation_config.eos_token_id = tokenizer.eos_token_id
    else:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(model, token=hf_token, padding_side="left")
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        lm = AutoModelForCausalLM.from_pretrained(model, token=hf_token, dtype=torch_dtype)
    return lm.to(device=device, dtype=torch_dtype), tokenizer  # type: ignore[call-arg]
