"""Parameters of the localisation method, with the report's values as defaults."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

#: Phrases whose mean text embedding is the neutral "background" direction of System 1.
NEUTRAL_PHRASES: tuple[str, ...] = ("background sound", "ambient noise", "background audio")

#: Systems: 1 = GMM + background contrast, 2 = GMM on the raw similarity trace.
System = Literal[1, 2]
Engine = Literal["reference", "fast"]


@dataclass(frozen=True)
class LocalizeConfig:
    """Every number of the method, defaulting to the report's values.

    Attributes
    ----------
    sigma_frames : Gaussian smoothing width in frames (1 frame = 1 s), as
        ``scipy.ndimage.gaussian_filter1d(mode="reflect", truncate=4.0)``.
    n_init : number of EM initialisations; the maximum-likelihood fit is kept.
    random_state : seed of the initialisations (one stream per query).
    tol, max_iter, reg_covar : EM stopping rule and variance floor, as scikit-learn's
        ``GaussianMixture``.
    threshold : posterior level a frame must reach to belong to a candidate run.
    peak_weight : weight of the run's maximum smoothed trace value in its score.
    max_windows : number of ranked windows returned per query.
    engine : ``"reference"`` (scikit-learn, one fit per query) or ``"fast"`` (batched NumPy).
    hop_s : seconds per frame (the features' window hop).
    """

    sigma_frames: float = 1.5
    n_init: int = 5
    random_state: int = 42
    tol: float = 1e-3
    max_iter: int = 100
    reg_covar: float = 1e-6
    threshold: float = 0.45
    peak_weight: float = 0.3
    max_windows: int = 10
    engine: Engine = "fast"
    hop_s: float = 1.0

    def __post_init__(self) -> None:
        if not self.sigma_frames >= 0:
            raise ValueError(f"sigma_frames must be >= 0, got {self.sigma_frames}")
        if self.n_init < 1:
            raise ValueError(f"n_init must be >= 1, got {self.n_init}")
        if not self.tol > 0:
            raise ValueError(f"tol must be > 0, got {self.tol}")
        if self.max_iter < 1:
            raise ValueError(f"max_iter must be >= 1, got {self.max_iter}")
        if not self.reg_covar >= 0:
            raise ValueError(f"reg_covar must be >= 0, got {self.reg_covar}")
        if not 0 < self.threshold < 1:
            raise ValueError(f"threshold must lie in (0, 1), got {self.threshold}")
        if self.max_windows < 1:
            raise ValueError(f"max_windows must be >= 1, got {self.max_windows}")
        if self.engine not in ("reference", "fast"):
            raise ValueError(f"engine must be 'reference' or 'fast', got {self.engine!r}")
        if not self.hop_s > 0:
            raise ValueError(f"hop_s must be > 0, got {self.hop_s}")

    def with_(self, **changes: object) -> LocalizeConfig:
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)  # type: ignore[arg-type]
