"""Finding, downloading and strictly loading the MS-CLAP 2023 weights and the GPT-2 tokenizer.

Where the files come from, in order:

* checkpoint: ``--checkpoint PATH``; else ``CLAP_weights_2023.pth`` of the Hugging Face
  repository ``microsoft/msclap`` in the local Hugging Face cache; else downloaded there
  (with a progress bar) unless ``HF_HUB_OFFLINE`` is set;
* tokenizer: ``--tokenizer DIR`` (a folder holding GPT-2's ``vocab.json`` and ``merges.txt``);
  else those two files of the ``gpt2`` repository, from the cache or downloaded likewise.

A file that cannot be had is an :class:`InputError` that names it and says how to provide it.

Strict loading: every tensor a used part needs must be in the checkpoint with its official
name (:mod:`audiomoment.clap.keys`) and shape, and the checkpoint may hold nothing else under
that part's prefix, except

* the classification head of the audio encoder (``tscam_conv.*``, ``head.*``), not used;
* GPT-2's causal-mask buffers ``h.N.attn.bias`` and ``h.N.attn.masked_bias``, which
  checkpoints saved with transformers 4.x carry and current transformers no longer has (the
  mask is rebuilt, so their values are not needed).

Keys outside the used parts (``logit_scale``) are ignored.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any

from audiomoment.clap.keys import ENCODER
from audiomoment.errors import InputError

CHECKPOINT_REPO = "microsoft/msclap"
CHECKPOINT_FILE = "CLAP_weights_2023.pth"
TOKENIZER_REPO = "gpt2"
TOKENIZER_FILES = ("vocab.json", "merges.txt")

_LEGACY_GPT2_BUFFER = re.compile(re.escape(ENCODER["text"]) + r"h\.\d+\.attn\.(bias|masked_bias)")


def hub_offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` is set to a true value (read now, not at import)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def hub_file(repo_id: str, filename: str, how_to_provide: str) -> Path:
    """A file of a Hugging Face model repository: the cached copy, else a download.

    Raises :class:`InputError` (naming the file and ``how_to_provide``) when it is not
    cached and cannot be downloaded, or downloading is switched off by ``HF_HUB_OFFLINE``.
    """
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:  # pragma: no cover - installed with transformers
        raise InputError(
            f"{filename} ({repo_id}) is needed and huggingface_hub is not installed: "
            f"{how_to_provide}"
        ) from None
    try:
        return Path(hf_hub_download(repo_id, filename, local_files_only=True))
    except Exception:  # not cached (LocalEntryNotFoundError) or an unreadable cache
        pass
    if hub_offline():
        raise InputError(
            f"{filename} of the Hugging Face repository {repo_id} is not in the local cache "
            f"and HF_HUB_OFFLINE is set, so it cannot be downloaded: {how_to_provide}"
        )
    try:
        return Path(hf_hub_download(repo_id, filename))
    except Exception as exc:
        text = str(exc).strip()
        reason = text.splitlines()[0].split(". ")[0][:200] if text else type(exc).__name__
        raise InputError(
            f"could not download {filename} from the Hugging Face repository {repo_id} "
            f"({reason}): {how_to_provide}"
        ) from None


def resolve_checkpoint(path: str | os.PathLike[str] | None = None) -> Path:
    """The checkpoint file to use: ``path``, else the Hugging Face cache, else a download."""
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise InputError(f"{p}: checkpoint file not found")
        return p
    return hub_file(
        CHECKPOINT_REPO, CHECKPOINT_FILE,
        f"download {CHECKPOINT_FILE} from huggingface.co/{CHECKPOINT_REPO} and pass "
        "--checkpoint PATH",
    )


def resolve_tokenizer(path: str | os.PathLike[str] | None = None) -> Path:
    """A folder holding GPT-2's ``vocab.json`` and ``merges.txt``."""
    if path is not None:
        p = Path(path)
        if not p.is_dir():
            raise InputError(f"{p}: tokenizer folder not found")
        for name in TOKENIZER_FILES:
            if not (p / name).is_file():
                raise InputError(f"{p}: tokenizer folder has no {name}")
        return p
    how = (
        f"download {' and '.join(TOKENIZER_FILES)} from huggingface.co/{TOKENIZER_REPO} into "
        "one folder and pass --tokenizer DIR"
    )
    files = [hub_file(TOKENIZER_REPO, name, how) for name in TOKENIZER_FILES]
    if files[0].parent != files[1].parent:  # pragma: no cover - same snapshot folder
        raise InputError(f"{files[0]} and {files[1]} are not in one folder: {how}")
    return files[0].parent


def is_ignored_audio_key(key: str) -> bool:
    """Keys of the audio part (relative to its prefix) that are accepted and ignored: the
    unused classification head."""
    from audiomoment.clap.htsat import UNUSED_KEYS

    prefix = ENCODER["audio"]
    return key.startswith(prefix) and key[len(prefix):] in UNUSED_KEYS


def is_ignored_text_key(key: str) -> bool:
    """Keys of the text part (relative to its prefix) that are accepted and ignored: GPT-2's
    legacy causal-mask buffers."""
    return _LEGACY_GPT2_BUFFER.fullmatch(key) is not None


def part_state(
    state: Mapping[str, Any],
    prefix: str,
    expected: Collection[str],
    ignored: Callable[[str], bool],
    source: str,
) -> dict[str, Any]:
    """The tensors of one part (keys without ``prefix``), checked strictly.

    ``expected``: the keys the part needs (without ``prefix``). Raises :class:`InputError`
    naming the first missing and the first unexpected key (and how many there are).
    """
    found = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    missing = [k for k in expected if k not in found]
    wanted = set(expected)
    unexpected = sorted(k for k in found if k not in wanted and not ignored(k))
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing key(s), first {prefix}{missing[0]}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected key(s), first {prefix}{unexpected[0]}")
    if problems:
        raise InputError(
            f"{source}: not an MS-CLAP 2023 checkpoint: {'; '.join(problems)}"
        )
    return {k: found[k] for k in expected}


def load_into(module: Any, tensors: Mapping[str, Any], source: str, assign: bool = False) -> None:
    """``module.load_state_dict(tensors, strict=True)`` as float32, with shape errors reported
    as :class:`InputError`."""
    import torch

    converted = {
        k: (v.float() if torch.is_tensor(v) and v.is_floating_point() else v)
        for k, v in tensors.items()
    }
    own = module.state_dict()
    for key, value in converted.items():
        check_tensor(value, key, source, floating=own[key].is_floating_point())
        if tuple(value.shape) != tuple(own[key].shape):
            raise InputError(
                f"{source}: tensor {key} has shape {tuple(value.shape)}, "
                f"expected {tuple(own[key].shape)} (not an MS-CLAP 2023 checkpoint?)"
            )
    module.load_state_dict(converted, strict=True, assign=assign)


def check_tensor(value: Any, key: str, source: str, floating: bool = True) -> None:
    """Refuse a checkpoint entry that is not a tensor, or (``floating``) does not hold
    finite floating-point numbers: :class:`InputError` naming ``source`` and ``key``."""
    import torch

    if not torch.is_tensor(value):
        raise InputError(f"{source}: {key} is not a tensor (got {type(value).__name__}); "
                         "not an MS-CLAP 2023 checkpoint")
    if not floating:
        return
    if not value.is_floating_point():
        raise InputError(f"{source}: tensor {key} holds {value.dtype}, expected floating-point "
                         "weights (not an MS-CLAP 2023 checkpoint?)")
    if not bool(torch.isfinite(value).all()):
        raise InputError(f"{source}: tensor {key} contains NaN or infinite values")
