"""The HTS-AT audio encoder: front end facts, token orders, and the whole network against a
plain (roll, partition, attend, reverse) formulation of the same computation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from audiomoment.clap.htsat import (
    HTSAT,
    UNUSED_KEYS,
    HTSATConfig,
    SwinBlock,
    expected_keys,
    inverse_order,
    merge_order,
    window_order,
)
from audiomoment.clap.keys import HEAD_KEYS, PART, encoder_prefix, head_prefix, part_keys
from audiomoment.clap.weights import is_ignored_audio_key, load_into, part_state
from audiomoment.errors import InputError
from audiomoment.testing.random_clap import random_state_dict

#: The encoder's prefix in the official checkpoint, spelled out as an independent check.
CHECKPOINT_PREFIX = "audio_encoder.base.htsat."


@pytest.fixture(scope="module")
def audio_state() -> dict:
    """The audio part of a random checkpoint in the official layout."""
    return {k: v for k, v in random_state_dict(seed=3, text=False).items()
            if k.startswith(CHECKPOINT_PREFIX)}


@pytest.fixture(scope="module")
def htsat(audio_state: dict) -> HTSAT:
    model = HTSAT()
    tensors = {k[len(CHECKPOINT_PREFIX):]: v for k, v in audio_state.items()}
    load_into(model, {k: v for k, v in tensors.items() if k not in UNUSED_KEYS}, "test")
    return model.prepare()


def test_configuration_facts(htsat: HTSAT) -> None:
    cfg = HTSATConfig()
    assert (cfg.sample_rate, cfg.n_fft, cfg.hop_length, cfg.n_mels) == (44100, 1024, 320, 64)
    assert cfg.num_features == 768
    assert cfg.freq_ratio == 4 and cfg.image_frames == 1024

    def frames(n_samples: int) -> int:  # the encoder's own spectrogram frames
        return int(htsat.log_mel(torch.zeros(1, n_samples)).shape[1])

    assert frames(44100) == 138  # a 1-s window: 44100 // 320 + 1
    assert frames(cfg.max_samples) == 1024
    assert frames(cfg.max_samples + 1) == 1025


def test_the_key_map_spells_the_official_prefixes() -> None:
    assert encoder_prefix("audio") == CHECKPOINT_PREFIX
    assert encoder_prefix("text") == "caption_encoder.base."
    assert head_prefix("audio") == "audio_encoder.projection."
    assert head_prefix("text") == "caption_encoder.projection."
    assert part_keys("audio", ["bn0.running_var"]) == [
        "base.htsat.bn0.running_var", "projection.linear1.weight", "projection.linear2.weight",
        "projection.layer_norm.weight", "projection.layer_norm.bias"]


def test_checkpoint_keys_are_the_official_names() -> None:
    keys = set(expected_keys())
    for key in (
        "spectrogram_extractor.stft.conv_real.weight",
        "spectrogram_extractor.stft.conv_imag.weight",
        "logmel_extractor.melW",
        "bn0.running_var",
        "bn0.num_batches_tracked",
        "patch_embed.proj.weight",
        "patch_embed.norm.bias",
        "layers.0.blocks.0.attn.relative_position_bias_table",
        "layers.0.blocks.0.attn.relative_position_index",
        "layers.0.blocks.1.attn_mask",
        "layers.2.blocks.5.mlp.fc2.weight",
        "layers.2.downsample.reduction.weight",
        "norm.weight",
    ):
        assert key in keys
    # the last stage is a single 8 x 8 window: no shift, so no mask buffer
    assert "layers.3.blocks.1.attn_mask" not in keys
    assert not any(k.startswith(("tscam_conv", "head.")) for k in keys)


def naive_orders(h: int, w: int, window: int, shift: int) -> np.ndarray:
    grid = np.arange(h * w).reshape(h, w)
    rolled = np.roll(grid, (-shift, -shift), axis=(0, 1))
    tiles = rolled.reshape(h // window, window, w // window, window).transpose(0, 2, 1, 3)
    return tiles.reshape(-1)


@pytest.mark.parametrize("shift", [0, 4])
def test_window_order_is_roll_then_partition(shift: int) -> None:
    order = window_order(16, 16, 8, shift).numpy()
    assert np.array_equal(order, naive_orders(16, 16, 8, shift))
    inv = inverse_order(torch.from_numpy(order)).numpy()
    assert np.array_equal(order[inv], np.arange(256))


def test_merge_order_matches_strided_slices() -> None:
    h = w = 8
    grid = torch.arange(h * w).view(1, h, w, 1)
    parts = [grid[:, 0::2, 0::2], grid[:, 1::2, 0::2], grid[:, 0::2, 1::2], grid[:, 1::2, 1::2]]
    expected = torch.cat(parts, -1).view(-1, 4)
    assert torch.equal(merge_order(h, w), expected)


def plain_block(block: SwinBlock, x: torch.Tensor) -> torch.Tensor:
    """One Swin block on row-major tokens, the textbook way."""
    b, length, c = x.shape
    h, w = block.resolution
    win, shift = block.window, block.shift
    heads = block.attn.num_heads
    n = win * win
    y = block.norm1(x).view(b, h, w, c)
    if shift:
        y = torch.roll(y, (-shift, -shift), (1, 2))
    y = y.view(b, h // win, win, w // win, win, c).permute(0, 1, 3, 2, 4, 5).reshape(-1, n, c)
    q, k, v = block.attn.qkv(y).reshape(-1, n, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
    att = (q * block.attn.scale) @ k.transpose(-2, -1) + block.attn.position_bias()[None]
    if block.attn_mask is not None:
        n_win = block.attn_mask.shape[0]
        att = att.view(-1, n_win, heads, n, n) + block.attn_mask[None, :, None]
        att = att.view(-1, heads, n, n)
    y = (att.softmax(-1) @ v).transpose(1, 2).reshape(-1, n, c)
    y = block.attn.proj(y).view(b, h // win, w // win, win, win, c)
    y = y.permute(0, 1, 3, 2, 4, 5).reshape(b, h, w, c)
    if shift:
        y = torch.roll(y, (shift, shift), (1, 2))
    x = x + y.reshape(b, length, c)
    return x + block.mlp(block.norm2(x))


def plain_forward(model: HTSAT, wave: torch.Tensor) -> torch.Tensor:
    """The whole encoder with row-major tokens throughout and strided patch merging."""
    x = model.patch_embed.norm(model.patch_embed(model.image(model.log_mel(wave))).transpose(1, 2))
    for stage in model.layers:
        for block in stage.blocks:
            x = plain_block(block, x)
        if stage.downsample is not None:
            b, _, c = x.shape
            h, w = stage.resolution
            g = x.view(b, h, w, c)
            g = torch.cat([g[:, 0::2, 0::2], g[:, 1::2, 0::2], g[:, 0::2, 1::2],
                           g[:, 1::2, 1::2]], -1)
            x = stage.downsample(g.view(b, -1, 4 * c))
    return model.norm(x).mean(dim=1)


def test_block_in_window_order_equals_plain_block(htsat: HTSAT) -> None:
    torch.manual_seed(0)
    for block in (htsat.layers[1].blocks[0], htsat.layers[1].blocks[1]):
        x = torch.randn(2, 32 * 32, 192)
        with torch.inference_mode():
            plain = plain_block(block, x)[:, block.order]
            ours = block(x[:, block.order])
        assert torch.allclose(ours, plain, atol=2e-5, rtol=1e-5)


def test_encoder_equals_plain_formulation(htsat: HTSAT) -> None:
    torch.manual_seed(1)
    wave = 0.1 * torch.randn(2, 44100)
    with torch.inference_mode():
        ours = htsat(wave)
        plain = plain_forward(htsat, wave)
    assert ours.shape == (2, 768)
    assert torch.isfinite(ours).all()
    assert float((ours - plain).abs().max()) < 1e-4


def test_front_end_matches_a_direct_stft(htsat: HTSAT) -> None:
    """Power spectrogram = |conv1d(reflect-padded wave, kernels)|^2, mel, dB, batch norm."""
    torch.manual_seed(2)
    wave = 0.1 * torch.randn(1, 44100)
    stft = htsat.spectrogram_extractor.stft
    padded = F.pad(wave[:, None], (512, 512), mode="reflect")
    real = F.conv1d(padded, stft.conv_real.weight, stride=320)
    imag = F.conv1d(padded, stft.conv_imag.weight, stride=320)
    power = (real**2 + imag**2).transpose(1, 2)  # (1, 138, 513)
    mel = 10 * torch.log10((power @ htsat.logmel_extractor.melW).clamp_min(1e-10))
    bn = htsat.bn0
    expected = (mel - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps) * bn.weight + bn.bias
    with torch.inference_mode():
        ours = htsat.log_mel(wave)
    assert ours.shape == (1, 138, 64)
    assert torch.allclose(ours, expected, atol=1e-3, rtol=1e-4)


def test_image_stacks_four_time_chunks(htsat: HTSAT) -> None:
    x = torch.arange(1024 * 64, dtype=torch.float32).view(1, 1024, 64)
    image = htsat.image(x)
    assert image.shape == (1, 1, 256, 256)
    # row k * 64 + m, column t holds frame k * 256 + t of mel bin m
    for k, m, t in [(0, 0, 0), (1, 5, 7), (3, 63, 255), (2, 10, 100)]:
        assert image[0, 0, k * 64 + m, t] == x[0, k * 256 + t, m]


def test_batches_do_not_mix_and_long_input_is_refused(htsat: HTSAT) -> None:
    torch.manual_seed(3)
    wave = 0.1 * torch.randn(3, 44100)
    with torch.inference_mode():
        together = htsat(wave)
        alone = torch.cat([htsat(wave[i : i + 1]) for i in range(3)])
    assert float((together - alone).abs().max()) < 1e-5
    with pytest.raises(ValueError, match="too long"):
        htsat(torch.zeros(1, HTSATConfig().max_samples + 1))


def test_part_state_is_strict(audio_state: dict) -> None:
    audio = PART["audio"]
    state = dict(audio_state)
    state.update({f"{head_prefix('audio')}{k}": torch.zeros(1) for k in HEAD_KEYS})
    expected = part_keys("audio", expected_keys())
    assert len(expected) == len(expected_keys()) + 4
    tensors = part_state(state, audio, expected, is_ignored_audio_key, "ckpt")
    assert len(tensors) == len(expected)  # the unused head was accepted and dropped

    extra = {**state, f"{CHECKPOINT_PREFIX}layers.0.blocks.0.attn.extra": torch.zeros(1)}
    with pytest.raises(InputError, match=r"1 unexpected key.*attn\.extra"):
        part_state(extra, audio, expected, is_ignored_audio_key, "ckpt")
    missing = {k: v for k, v in state.items() if not k.endswith("bn0.running_var")}
    with pytest.raises(InputError, match=r"1 missing key.*bn0\.running_var"):
        part_state(missing, audio, expected, is_ignored_audio_key, "ckpt")


def test_load_into_reports_shape_mismatch(audio_state: dict) -> None:
    tensors = {k[len(CHECKPOINT_PREFIX):]: v for k, v in audio_state.items()}
    tensors = {k: v for k, v in tensors.items() if k not in UNUSED_KEYS}
    tensors["norm.weight"] = torch.ones(512)
    with pytest.raises(InputError, match=r"norm\.weight has shape \(512,\), expected \(768,\)"):
        load_into(HTSAT(), tensors, "ckpt")


def test_workers_and_bfloat16(htsat: HTSAT) -> None:
    import copy

    from audiomoment.clap.model import AudioEncoder
    from audiomoment.testing.random_clap import random_projection_head

    head = random_projection_head(np.random.default_rng(0))
    # Inputs that the random network tells apart: white-noise windows of one level give
    # features within a few hundredths of each other, as close as bfloat16's own error, so a
    # mixed-up batch would go unnoticed with them.
    rng = np.random.default_rng(4)
    t = np.arange(44100) / 44100
    x = np.stack([
        0.001 * rng.standard_normal(44100),
        0.1 * rng.standard_normal(44100),
        0.5 * np.sin(2 * np.pi * 440 * t),
        0.5 * np.sin(2 * np.pi * 5000 * t),
        0.3 * np.sign(np.sin(2 * np.pi * 3 * t)) * rng.standard_normal(44100),
    ]).astype(np.float32)
    one = AudioEncoder(htsat, head, workers=1).features(x)
    two = AudioEncoder(htsat, head, workers=2).features(x)
    assert one.shape == (5, 768) and one.dtype == np.float32
    assert np.max(np.abs(one - two)) < 1e-5
    between = np.abs(one[:, None] - one[None]).max(axis=-1)
    assert between[~np.eye(len(x), dtype=bool)].min() > 0.1  # the rows are distinguishable
    bf16 = AudioEncoder(copy.deepcopy(htsat), head, "bfloat16", workers=2).features(x)
    assert np.all(np.isfinite(bf16))
    # lossy, but close: bfloat16 keeps 8 significant bits (relative step 2^-8 = 0.4%); the
    # error builds up to about 1% of a row's norm through the network, a few hundredths on
    # features of order 1, well under the distance to any other window's features
    relative = np.linalg.norm(bf16 - one, axis=1) / np.linalg.norm(one, axis=1)
    assert np.all(relative < 0.025), relative
    assert np.max(np.abs(bf16 - one)) < 0.08
    nearest = np.abs(bf16[:, None] - one[None]).max(axis=-1).argmin(axis=1)
    assert nearest.tolist() == list(range(len(x)))
    assert htsat.compute_dtype == torch.float32


def test_changed_weights_are_never_served_from_the_packed_copy() -> None:
    from audiomoment.clap.htsat import linear, pack_linear_weight

    layer = torch.nn.Linear(16, 8)
    pack_linear_weight(layer)
    x = torch.randn(3, 16)
    with torch.inference_mode():
        before = linear(x, layer)
    with torch.no_grad():
        layer.weight.mul_(2.0)
    with torch.inference_mode():
        after = linear(x, layer)
        expected = torch.nn.functional.linear(x, layer.weight, layer.bias)
    assert torch.allclose(after, expected, atol=1e-6)
    assert not torch.allclose(before, after)
