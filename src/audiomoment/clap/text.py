"""The MS-CLAP 2023 text encoder: GPT-2 (transformers' ``GPT2Model``) and its tokenisation.

MS-CLAP's convention, reproduced here:

1. the caption gets the suffix ``" <|endoftext|>"`` (so it ends with the tokens for a
   space, "Ġ", and ``<|endoftext|>``);
2. the GPT-2 tokenizer, with ``"!"`` registered as its pad token, encodes it; sequences are
   padded to 77 tokens with id 0 (never truncated);
3. the query vector is the hidden state at position ``(number of ids != 0) - 1``.

``"!"`` is GPT-2's token 0, the same id as the padding. Registering it as the pad token
makes the tokenizer split every ``"!"`` of a caption into its own token 0, and step 3 then
counts those tokens as padding. So for a caption with k ``"!"`` characters the official
model takes the hidden state k positions before the last token, not the last token. This
module does exactly the same (:func:`query_position`), so that its embeddings are the
official model's for every caption, ``"!"`` included; with no ``"!"`` the position is the
final ``<|endoftext|>``. (For a caption ending in one ``"!"``, the usual case, the vector is
that of the space token just before ``<|endoftext|>``, which has seen the whole caption.)

GPT-2 is causal: the hidden state at a position depends only on the tokens up to it, so
padding never changes it and batches are padded only to their longest member.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from audiomoment.errors import InputError

#: The configuration of the public "gpt2" checkpoint (its config.json), which MS-CLAP uses.
GPT2_CONFIG: dict[str, Any] = {
    "vocab_size": 50257,
    "n_positions": 1024,
    "n_embd": 768,
    "n_layer": 12,
    "n_head": 12,
    "n_inner": None,
    "activation_function": "gelu_new",
    "resid_pdrop": 0.1,
    "embd_pdrop": 0.1,
    "attn_pdrop": 0.1,
    "layer_norm_epsilon": 1e-5,
    "initializer_range": 0.02,
    "scale_attn_weights": True,
    "scale_attn_by_inverse_layer_idx": False,
    "reorder_and_upcast_attn": False,
    "bos_token_id": 50256,
    "eos_token_id": 50256,
}


@dataclass(frozen=True)
class TokenisationConfig:
    """MS-CLAP's text preparation.

    suffix : appended to every caption.
    pad_token : the pad token registered with the tokenizer ("!", GPT-2 id 0).
    pad_id : the id counted as padding when locating the query position.
    text_len : length captions are padded to (longer ones are not truncated).
    max_positions : GPT-2's position limit; longer captions are an error.
    """

    suffix: str = " <|endoftext|>"
    pad_token: str = "!"
    pad_id: int = 0
    text_len: int = 77
    max_positions: int = 1024


def gpt2_config() -> Any:
    """A transformers ``GPT2Config`` with :data:`GPT2_CONFIG` (no download)."""
    from transformers import GPT2Config

    return GPT2Config(**GPT2_CONFIG)


def build_gpt2(state: Mapping[str, Any] | None = None, source: str = "checkpoint") -> Any:
    """A ``GPT2Model`` in eval mode; with ``state`` (keys without the checkpoint prefix),
    its weights are those tensors, loaded strictly."""
    import torch
    from transformers import GPT2Model

    from audiomoment.clap.weights import load_into

    config = gpt2_config()
    if state is None:
        model = GPT2Model(config)
    else:
        with torch.device("meta"):
            model = GPT2Model(config)
        if any(True for _ in model.buffers()):  # a transformers version with mask buffers
            model = GPT2Model(config)
            load_into(model, state, source)
        else:
            load_into(model, state, source, assign=True)
    return model.eval().requires_grad_(False)


def gpt2_keys() -> list[str]:
    """State-dict keys of GPT-2 under current transformers (without the checkpoint prefix)."""
    import torch
    from transformers import GPT2Model

    with torch.device("meta"):
        model = GPT2Model(gpt2_config())
    return list(model.state_dict().keys())


def load_tokenizer(folder: str | os.PathLike[str], config: TokenisationConfig | None = None) -> Any:
    """GPT-2's tokenizer from a folder with ``vocab.json`` and ``merges.txt``, with MS-CLAP's
    pad token registered."""
    from transformers import GPT2TokenizerFast
    from transformers.utils import logging as hf_logging

    config = config or TokenisationConfig()
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        tokenizer = GPT2TokenizerFast.from_pretrained(str(folder), local_files_only=True)
    except Exception as exc:
        raise InputError(
            f"{folder}: not a GPT-2 tokenizer folder ({type(exc).__name__})"
        ) from None
    finally:
        hf_logging.set_verbosity(verbosity)
    tokenizer.add_special_tokens({"pad_token": config.pad_token})
    return tokenizer


def query_position(ids: Sequence[int], pad_id: int = 0) -> int:
    """MS-CLAP's query position: (number of ids != ``pad_id``) - 1."""
    return sum(1 for i in ids if i != pad_id) - 1


class TextEncoder:
    """Captions -> GPT-2 hidden states -> query vectors (768-d, before the projection head).

    ``model``: a ``GPT2Model``; ``tokenizer``: from :func:`load_tokenizer`.
    """

    def __init__(
        self, model: Any, tokenizer: Any, config: TokenisationConfig | None = None
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.config = config or TokenisationConfig()

    def token_ids(self, text: str) -> list[int]:
        """Token ids of one caption with the suffix, unpadded."""
        ids = self.tokenizer(text + self.config.suffix)["input_ids"]
        if len(ids) > self.config.max_positions:
            raise InputError(
                f"query too long: {len(ids)} tokens, GPT-2 takes at most "
                f"{self.config.max_positions} ({text[:40]!r}...)"
            )
        return list(ids)

    def padded_ids(self, text: str) -> list[int]:
        """The ids the official model sees: padded with ``pad_id`` to ``text_len``."""
        ids = self.token_ids(text)
        return ids + [self.config.pad_id] * max(0, self.config.text_len - len(ids))

    def position(self, text: str) -> int:
        """Index of the token whose hidden state is the query vector."""
        return query_position(self.token_ids(text), self.config.pad_id)

    def hidden_states(
        self, texts: Sequence[str], batch_size: int = 32
    ) -> list[NDArray[np.float32]]:
        """Per caption, the hidden states (p + 1, 768) of positions 0..p, p = its query
        position, float32: the last row is the query vector."""
        import torch

        prepared = []
        for text in texts:
            ids = self.token_ids(text)
            p = query_position(ids, self.config.pad_id)
            prepared.append(ids[: p + 1])
        out: list[NDArray[np.float32] | None] = [None] * len(texts)
        order = sorted(range(len(texts)), key=lambda i: len(prepared[i]))
        with torch.inference_mode():
            for start in range(0, len(order), batch_size):
                chunk = order[start : start + batch_size]
                width = max(len(prepared[i]) for i in chunk)
                ids = torch.full((len(chunk), width), self.config.pad_id, dtype=torch.long)
                mask = torch.zeros((len(chunk), width), dtype=torch.long)
                for row, i in enumerate(chunk):
                    n = len(prepared[i])
                    ids[row, :n] = torch.tensor(prepared[i])
                    mask[row, :n] = 1
                hidden = self.model(input_ids=ids, attention_mask=mask).last_hidden_state
                for row, i in enumerate(chunk):
                    n = len(prepared[i])
                    out[i] = hidden[row, :n].float().numpy().copy()
        return out  # type: ignore[return-value]

    def query_vectors(self, texts: Sequence[str], batch_size: int = 32) -> NDArray[np.float32]:
        """(N, 768) query vectors (before the projection head)."""
        if not texts:
            return np.zeros((0, 768), np.float32)
        return np.stack([h[-1] for h in self.hidden_states(texts, batch_size)])


def tokenizer_digest(folder: str | os.PathLike[str]) -> str:
    """SHA-256 of the tokenizer files, for cache keys."""
    import hashlib

    from audiomoment.clap.weights import TOKENIZER_FILES

    h = hashlib.sha256()
    for name in TOKENIZER_FILES:
        h.update((Path(folder) / name).read_bytes())
    return h.hexdigest()
