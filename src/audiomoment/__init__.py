"""audiomoment: training-free audio moment retrieval.

Text query + long recording -> ranked time windows where it happens, from frozen MS-CLAP 2023
embeddings, a (background-contrast) similarity trace and a per-query two-component Gaussian
mixture.
"""

from audiomoment.config import NEUTRAL_PHRASES, LocalizeConfig
from audiomoment.method.localize import (
    LocalizationResult,
    localize,
    localize_trace,
    localize_traces,
)
from audiomoment.method.traces import contrast_trace, neutral_embedding, similarity_trace

__all__ = [
    "NEUTRAL_PHRASES",
    "LocalizationResult",
    "LocalizeConfig",
    "contrast_trace",
    "localize",
    "localize_trace",
    "localize_traces",
    "neutral_embedding",
    "similarity_trace",
]
__version__ = "0.1.0"
