"""What produced a predictions file, saved beside it and read back by every later step.

``predict --out system1.jsonl`` also writes ``system1.settings.json``::

    {"format": "audiomoment-run-settings", "version": 1,
     "system": 1, "config": {every LocalizeConfig field},
     "neutral_source": "checkpoint text encoder" | "file neutral.npy (sha256 ...)" | null,
     "checkpoint_sha256": "..." | null, "package_version": "0.1.0"}

``report`` re-localises Figure 2 with these settings, ``package-submission`` states them in
the DCASE meta file, and files meant to be one system are refused when their settings differ
(:func:`check_same_settings`). Predictions from other tools have no such file and still work.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from audiomoment.config import LocalizeConfig
from audiomoment.errors import InputError
from audiomoment.io.atomic import write_text

FORMAT = "audiomoment-run-settings"
VERSION = 1
SUFFIX = ".settings.json"


@dataclass(frozen=True)
class RunSettings:
    """The settings of one ``predict`` run.

    system : 1, 2 or "window". config : every parameter of the localisation.
    neutral_source : where System 1's neutral embedding came from (None for other systems).
    checkpoint_sha256 : SHA-256 of the checkpoint whose heads projected the features (None:
    features already in the joint space). package_version : audiomoment's version.
    """

    system: int | str
    config: LocalizeConfig
    neutral_source: str | None = None
    checkpoint_sha256: str | None = None
    package_version: str = ""

    def to_json(self) -> dict[str, Any]:
        """The JSON object written beside the predictions."""
        return {
            "format": FORMAT,
            "version": VERSION,
            "system": self.system,
            "config": asdict(self.config),
            "neutral_source": self.neutral_source,
            "checkpoint_sha256": self.checkpoint_sha256,
            "package_version": self.package_version,
        }

    @classmethod
    def from_json(cls, data: Any, source: str = "settings") -> RunSettings:
        """Parse :meth:`to_json`'s object; InputError naming ``source`` when it is not one."""
        if not isinstance(data, Mapping) or data.get("format") != FORMAT:
            raise InputError(f"{source}: not an audiomoment run-settings file")
        if data.get("version") != VERSION:
            raise InputError(f"{source}: unsupported run-settings version {data.get('version')!r}")
        system = data.get("system")
        if system not in (1, 2, "window"):
            raise InputError(f"{source}: 'system' must be 1, 2 or \"window\", got {system!r}")
        raw = data.get("config")
        if not isinstance(raw, Mapping):
            raise InputError(f"{source}: 'config' must be an object")
        known = {f.name for f in fields(LocalizeConfig)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise InputError(f"{source}: unknown config field(s) {', '.join(unknown)}")
        try:
            config = LocalizeConfig(**raw)
        except (TypeError, ValueError) as exc:
            raise InputError(f"{source}: 'config': {exc}") from None
        neutral = data.get("neutral_source")
        digest = data.get("checkpoint_sha256")
        for name, value in (("neutral_source", neutral), ("checkpoint_sha256", digest)):
            if value is not None and not isinstance(value, str):
                raise InputError(f"{source}: '{name}' must be a string or null")
        return cls(system, config, neutral, digest, str(data.get("package_version", "")))

    def differences(self, other: RunSettings) -> list[str]:
        """Names of the settings that differ (config fields by name), ignoring the version."""
        out = [f.name for f in fields(LocalizeConfig)
               if getattr(self.config, f.name) != getattr(other.config, f.name)]
        for name in ("system", "neutral_source", "checkpoint_sha256"):
            if getattr(self, name) != getattr(other, name):
                out.append(name)
        return out


def settings_path(predictions_path: str | os.PathLike[str]) -> Path:
    """``system1.jsonl`` -> ``system1.settings.json`` (same folder)."""
    p = Path(predictions_path)
    return p.with_name(p.stem + SUFFIX) if p.suffix else p.with_name(p.name + SUFFIX)


def write_run_settings(predictions_path: str | os.PathLike[str], settings: RunSettings) -> Path:
    """Write the settings beside the predictions file, atomically; returns the path."""
    path = settings_path(predictions_path)
    write_text(path, json.dumps(settings.to_json(), indent=2) + "\n")
    return path


def read_run_settings(predictions_path: str | os.PathLike[str]) -> RunSettings | None:
    """The settings saved beside a predictions file, or None when there are none."""
    path = settings_path(predictions_path)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise InputError(f"{path}: not readable JSON ({type(exc).__name__})") from None
    return RunSettings.from_json(data, str(path))


def check_same_settings(
    files: Sequence[str | os.PathLike[str]], settings: Sequence[RunSettings | None]
) -> None:
    """Refuse files meant to be one system whose recorded settings differ.

    Files without settings (other tools) are not compared.
    """
    known = [(str(f), s) for f, s in zip(files, settings, strict=True) if s is not None]
    for name, s in known[1:]:
        diff = s.differences(known[0][1])
        if diff:
            raise InputError(
                f"{name}: produced with other settings than {known[0][0]} "
                f"({', '.join(diff)} differ); they cannot be one system"
            )
