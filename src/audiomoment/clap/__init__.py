"""MS-CLAP 2023 in the package: the HTS-AT audio encoder and the GPT-2 text encoder, loaded
strictly from the official checkpoint ``CLAP_weights_2023.pth``.

``load_clap`` finds the checkpoint (``--checkpoint``, the Hugging Face cache or a download)
and the GPT-2 tokenizer, and returns a :class:`ClapModel` with the parts asked for.

The names below are imported on first use, so that the light modules of the package
(``checkpoint``'s dimensions and heads, ``keys``) do not import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from audiomoment.clap.htsat import HTSAT, HTSATConfig
    from audiomoment.clap.model import AudioEncoder, ClapModel, file_features, load_clap
    from audiomoment.clap.text import TextEncoder, TokenisationConfig, query_position

_HOME = {
    "HTSAT": "htsat",
    "HTSATConfig": "htsat",
    "AudioEncoder": "model",
    "ClapModel": "model",
    "file_features": "model",
    "load_clap": "model",
    "TextEncoder": "text",
    "TokenisationConfig": "text",
    "query_position": "text",
}

__all__ = [
    "HTSAT",
    "AudioEncoder",
    "ClapModel",
    "HTSATConfig",
    "TextEncoder",
    "TokenisationConfig",
    "file_features",
    "load_clap",
    "query_position",
]


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value
