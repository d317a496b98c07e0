"""The key map of the official MS-CLAP 2023 checkpoint, spelled once for the whole package.

``CLAP_weights_2023.pth`` holds ``{"model": state_dict}``; the state dict follows the
official module tree, one part per modality, each with an encoder and a projection head::

    audio_encoder.base.htsat.<HTS-AT key>     the audio encoder (clap/htsat.py's names)
    audio_encoder.projection.<head key>       the audio projection head
    caption_encoder.base.<GPT-2 key>          the text encoder (transformers' GPT2Model)
    caption_encoder.projection.<head key>     the caption projection head
    logit_scale                               the contrastive temperature (not used)

``base`` is the official encoder wrapper of a part (for audio a wrapper module holding
HTS-AT as ``htsat``). A head's keys are :data:`HEAD_KEYS`: ``linear1.weight`` (1024 x 768),
``linear2.weight`` (1024 x 1024), ``layer_norm.weight`` and ``layer_norm.bias`` (1024).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal

Modality = Literal["audio", "text"]
MODALITIES: tuple[Modality, Modality] = ("audio", "text")

#: The top-level prefix of each modality's part.
PART: dict[Modality, str] = {"audio": "audio_encoder.", "text": "caption_encoder."}
#: The official encoder wrapper inside a part.
BASE = "base."
#: Where the encoder's own tensors start inside its part.
ENCODER: dict[Modality, str] = {"audio": BASE + "htsat.", "text": BASE}
#: Where the projection head's tensors start inside its part.
HEAD = "projection."
#: The tensors of one projection head (after the head's prefix).
HEAD_KEYS = ("linear1.weight", "linear2.weight", "layer_norm.weight", "layer_norm.bias")


def encoder_prefix(modality: Modality) -> str:
    """The full prefix of an encoder's tensors (``audio_encoder.base.htsat.``...)."""
    return PART[modality] + ENCODER[modality]


def head_prefix(modality: Modality) -> str:
    """The full prefix of a projection head's tensors (``audio_encoder.projection.``...)."""
    return PART[modality] + HEAD


def part_keys(modality: Modality, encoder_keys: Iterable[str]) -> list[str]:
    """The keys a part must hold, relative to its :data:`PART` prefix: the encoder's
    ``encoder_keys`` (its own state-dict names) and the projection head's."""
    return ([ENCODER[modality] + k for k in encoder_keys]
            + [HEAD + k for k in HEAD_KEYS])


def encoder_tensors(modality: Modality, part: Mapping[str, Any]) -> dict[str, Any]:
    """The encoder's tensors of a part (keys relative to :data:`PART`), under the encoder's
    own names."""
    prefix = ENCODER[modality]
    return {k[len(prefix):]: v for k, v in part.items() if k.startswith(prefix)}
