"""MS-CLAP 2023 in the package: the HTS-AT audio encoder and the GPT-2 text encoder, loaded
strictly from the official checkpoint ``CLAP_weights_2023.pth``.

``load_clap`` finds the checkpoint (``--checkpoint``, the Hugging Face cache or a download)
and the GPT-2 tokenizer, and returns a :class:`ClapModel` with the parts asked for.
"""

from audiomoment.clap.htsat import HTSAT, HTSATConfig
from audiomoment.clap.model import AudioEncoder, ClapModel, file_features, load_clap
from audiomoment.clap.text import TextEncoder, TokenisationConfig, query_position

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
