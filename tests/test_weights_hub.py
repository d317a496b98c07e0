"""Where the weights and the tokenizer come from when no path is given: the Hugging Face
cache (laid out by hand here, as huggingface_hub writes it), else a download (replaced by a
stand-in: no network in tests), else one clear error."""

from __future__ import annotations

from pathlib import Path

import huggingface_hub
import huggingface_hub.constants as hub_constants
import pytest

from audiomoment.clap.weights import resolve_checkpoint, resolve_tokenizer
from audiomoment.errors import InputError

REVISION = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "hf" / "hub"
    cache.mkdir(parents=True)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(cache))
    return cache


def cache_files(cache: Path, repo_id: str, files: dict[str, bytes]) -> Path:
    """Put ``files`` into the cache as a snapshot of ``repo_id`` at "main"; its folder."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(REVISION)
    snapshot = repo / "snapshots" / REVISION
    snapshot.mkdir(parents=True)
    for name, data in files.items():
        (snapshot / name).write_bytes(data)
    return snapshot


def test_cached_files_are_found_offline(hub_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    weights = cache_files(hub_cache, "microsoft/msclap", {"CLAP_weights_2023.pth": b"w"})
    tokenizer = cache_files(hub_cache, "gpt2", {"vocab.json": b"{}", "merges.txt": b"#"})
    found = resolve_checkpoint(None)
    assert found.resolve() == (weights / "CLAP_weights_2023.pth").resolve()
    assert found.read_bytes() == b"w"
    assert resolve_tokenizer(None).resolve() == tokenizer.resolve()


def test_missing_files_are_downloaded_when_online(
    hub_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    calls: list[tuple[str, str, bool]] = []

    def fake_download(repo_id: str, filename: str, local_files_only: bool = False) -> str:
        calls.append((repo_id, filename, local_files_only))
        if local_files_only:
            raise huggingface_hub.errors.LocalEntryNotFoundError("not cached")
        target = tmp_path / "downloaded" / repo_id / filename
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(b"fetched")
        return str(target)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    path = resolve_checkpoint(None)
    assert path.read_bytes() == b"fetched" and path.name == "CLAP_weights_2023.pth"
    # the cache is asked first, then the file is downloaded
    assert calls == [("microsoft/msclap", "CLAP_weights_2023.pth", True),
                     ("microsoft/msclap", "CLAP_weights_2023.pth", False)]
    assert resolve_tokenizer(None) == tmp_path / "downloaded" / "gpt2"


def test_failed_download_is_one_line_naming_the_file(
    hub_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)

    def no_network(repo_id: str, filename: str, local_files_only: bool = False) -> str:
        if local_files_only:
            raise huggingface_hub.errors.LocalEntryNotFoundError("not cached")
        raise OSError("Connection refused. Check your network.\nmore detail")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", no_network)
    with pytest.raises(InputError) as err:
        resolve_checkpoint(None)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("could not download CLAP_weights_2023.pth from the Hugging Face "
                              "repository microsoft/msclap (Connection refused)")
    assert message.endswith("--checkpoint PATH")
