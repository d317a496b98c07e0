"""The HTS-AT audio encoder of MS-CLAP 2023, up to its pooled 768-d latent.

Waveform (B, n_samples) at 44.1 kHz -> power spectrogram (STFT window ``n_fft`` = 1024
samples, ``hop_length`` = 320 samples, centred with reflect padding) -> 64-bin mel
filterbank -> dB -> per-bin batch norm -> bicubic stretch of the time axis to 1024 frames ->
a 256 x 256 "image" (four 256-frame chunks stacked along the mel axis) -> 4 x 4 patches ->
four Swin Transformer stages (windowed self-attention, 8 x 8 windows, shifted every other
block, patch merging between stages) -> LayerNorm -> mean over the 64 final tokens.

Facts of the official model that this module reproduces:

* The STFT kernels and the mel filterbank are those of HTS-AT's own configuration
  (built for 32 kHz, 50-14000 Hz, 64 mels), although the waveform fed in is 44.1 kHz.
  They are read from the checkpoint (``spectrogram_extractor.stft.conv_real/conv_imag.weight``,
  ``logmel_extractor.melW``), never recomputed.
* The dB conversion is ``10 log10(max(power, 1e-10))`` with reference 1 and no top-dB clip.
* The 768-d embedding is the average of the final normalised tokens, taken before the
  token-semantic classification head; that head (``tscam_conv``, ``head``) and the
  frame-wise upsampling are not computed here. Their checkpoint tensors are accepted and
  ignored (:data:`UNUSED_KEYS`).

Parameter and buffer names match the official state dict under the audio encoder's prefix
(:func:`audiomoment.clap.keys.encoder_prefix`), so the checkpoint loads strictly.

For speed, tokens are kept in each block's windowed order (one gather per block instead of
rolling and partitioning the grid and undoing both), attention runs through torch's fused
scaled-dot-product kernel with each block's relative-position bias and shift mask combined
once, and linear layers use oneDNN's kernel with prepacked weights and GELU fused into the
first MLP layer (plain torch where that kernel is missing). Results equal the textbook
formulation to float32 rounding (tests/test_clap_htsat.py, tools/parity_msclap.py).
"""

from __future__ import annotations

import os
import weakref
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: Checkpoint tensors of the classification head, which the embedding does not use.
UNUSED_KEYS = ("tscam_conv.weight", "tscam_conv.bias", "head.weight", "head.bias")
# index tensors are built on the CPU even under a meta-device context
_CPU = torch.device("cpu")


@dataclass(frozen=True)
class HTSATConfig:
    """Shape of the encoder; the defaults are MS-CLAP 2023's.

    Attributes
    ----------
    sample_rate : rate of the waveform fed to the encoder, Hz (44100). Informational: the
        STFT and mel tensors come from the checkpoint.
    n_fft : STFT window length and FFT size, samples.
    hop_length : STFT hop, samples.
    n_mels : mel bins.
    amin : floor of the mel power before the dB conversion.
    bn_eps : epsilon of the per-mel-bin batch norm.
    spec_size : side of the square spectrogram image the transformer sees.
    patch_size : side of a square patch (= patch stride).
    embed_dim : token width of the first stage; it doubles at every stage.
    depths : blocks per stage.
    num_heads : attention heads per stage.
    window_size : side of the attention windows, in tokens.
    mlp_ratio : hidden width of a block's MLP over its token width.
    ln_eps : epsilon of every LayerNorm.
    num_classes : width of the (unused) classification head; only for building checkpoints.
    max_samples : longest waveform accepted (its frames must fit the 1024-frame image).
    """

    sample_rate: int = 44100
    n_fft: int = 1024
    hop_length: int = 320
    n_mels: int = 64
    amin: float = 1e-10
    bn_eps: float = 1e-5
    spec_size: int = 256
    patch_size: int = 4
    embed_dim: int = 96
    depths: tuple[int, ...] = (2, 2, 6, 2)
    num_heads: tuple[int, ...] = (4, 8, 16, 32)
    window_size: int = 8
    mlp_ratio: float = 4.0
    ln_eps: float = 1e-5
    num_classes: int = 527

    @property
    def freq_ratio(self) -> int:
        """Time chunks stacked along the mel axis of the image (spec_size // n_mels = 4)."""
        return self.spec_size // self.n_mels

    @property
    def image_frames(self) -> int:
        """Spectrogram frames the time axis is stretched to (spec_size * freq_ratio = 1024)."""
        return self.spec_size * self.freq_ratio

    @property
    def num_features(self) -> int:
        """Width of the output embedding (embed_dim * 2 ** (stages - 1) = 768)."""
        return self.embed_dim * 2 ** (len(self.depths) - 1)

    @property
    def max_samples(self) -> int:
        """Longest waveform (samples) whose centred STFT has at most ``image_frames`` frames."""
        return self.image_frames * self.hop_length - 1


class STFTKernels(nn.Module):
    """The real and imaginary DFT x window kernels, each (n_fft // 2 + 1, 1, n_fft).

    Named as the official ``spectrogram_extractor.stft``; applied as one matrix product.
    """

    def __init__(self, n_fft: int) -> None:
        super().__init__()
        bins = n_fft // 2 + 1
        self.conv_real = nn.Conv1d(1, bins, n_fft, bias=False)
        self.conv_imag = nn.Conv1d(1, bins, n_fft, bias=False)
        self.conv_real.weight.requires_grad_(False)
        self.conv_imag.weight.requires_grad_(False)


class PowerSpectrogram(nn.Module):
    """|STFT|^2 of a centred, reflect-padded waveform: (B, n) -> (B, frames, n_fft // 2 + 1)."""

    def __init__(self, config: HTSATConfig) -> None:
        super().__init__()
        self.n_fft = config.n_fft
        self.hop_length = config.hop_length
        self.stft = STFTKernels(config.n_fft)
        self._kernel: Tensor | None = None

    def prepare(self) -> None:
        """Stack both kernels as one (n_fft, 2 * bins) matrix (after the weights are loaded)."""
        real = self.stft.conv_real.weight[:, 0, :]
        imag = self.stft.conv_imag.weight[:, 0, :]
        self._kernel = torch.cat([real, imag], dim=0).t().contiguous()

    def forward(self, wave: Tensor) -> Tensor:
        half = self.n_fft // 2
        padded = F.pad(wave[:, None, :], (half, half), mode="reflect")[:, 0, :]
        frames = padded.unfold(-1, self.n_fft, self.hop_length)  # (B, T, n_fft), a view
        if self._kernel is None or self._kernel.device != wave.device:
            self.prepare()
        spec = frames @ self._kernel.to(wave.dtype)  # type: ignore[union-attr]  # (B, T, 2 * bins)
        bins = spec.shape[-1] // 2
        real, imag = spec[..., :bins], spec[..., bins:]
        return real * real + imag * imag


class LogMel(nn.Module):
    """Mel filterbank then dB: (..., bins) -> (..., n_mels). ``melW``: (bins, n_mels)."""

    def __init__(self, config: HTSATConfig) -> None:
        super().__init__()
        self.amin = config.amin
        self.melW = nn.Parameter(
            torch.zeros(config.n_fft // 2 + 1, config.n_mels), requires_grad=False
        )

    def forward(self, power: Tensor) -> Tensor:
        mel = power @ self.melW
        return 10.0 * torch.log10(mel.clamp_min(self.amin))


class PatchEmbed(nn.Module):
    """Non-overlapping square patches -> tokens: (B, 1, S, S) -> (B, C, (S/p)^2), row-major.

    The LayerNorm ``norm`` is applied by the caller after reordering the tokens.
    """

    def __init__(self, config: HTSATConfig) -> None:
        super().__init__()
        p = config.patch_size
        self.proj = nn.Conv2d(1, config.embed_dim, kernel_size=p, stride=p)
        self.norm = nn.LayerNorm(config.embed_dim, eps=config.ln_eps)

    def forward(self, image: Tensor) -> Tensor:
        return self.proj(image).flatten(2)


# --- token orders ------------------------------------------------------------------------
#
# A Swin block attends within windows of a (possibly cyclically shifted) grid. Instead of
# rolling the grid and cutting it into windows (and undoing both) in every block, the tokens
# are kept in the order in which the current block's windows list them: window after window
# (row-major over windows), row-major inside each window. Everything else a block does is
# per token, so the block runs on that order directly, and moving to the next block's order
# (or to patch merging) is a single gather. The final pooling is a mean, blind to order.


def window_order(height: int, width: int, window: int, shift: int) -> Tensor:
    """(H*W,) row-major grid index of each token in windowed order.

    The grid is rolled by -shift on both axes (token (i, j) of the rolled grid is token
    ((i + shift) % H, (j + shift) % W) of the original), then cut into w x w windows.
    """
    rows = (torch.arange(height, device=_CPU) + shift) % height
    cols = (torch.arange(width, device=_CPU) + shift) % width
    grid = rows[:, None] * width + cols[None, :]  # (H, W) original index at rolled position
    return partition(grid[None, :, :, None], window).reshape(-1)


def merge_order(height: int, width: int) -> Tensor:
    """(H/2 * W/2, 4) row-major grid index of the 2 x 2 tokens each merged token takes, in
    the order (row 0, col 0), (row 1, col 0), (row 0, col 1), (row 1, col 1)."""
    i = torch.arange(height // 2, device=_CPU)[:, None]
    j = torch.arange(width // 2, device=_CPU)[None, :]
    parts = [(2 * i + dr) * width + (2 * j + dc) for dr, dc in ((0, 0), (1, 0), (0, 1), (1, 1))]
    return torch.stack([p.reshape(-1) for p in parts], dim=1)


def inverse_order(order: Tensor) -> Tensor:
    """Position of each grid token in ``order``: inverse_order(o)[o[k]] = k."""
    inverse = torch.empty_like(order, device=_CPU)
    inverse[order] = torch.arange(order.numel(), device=_CPU)
    return inverse


def relative_position_index(window: int) -> Tensor:
    """(w*w, w*w) index into the (2w-1)^2 relative-position table for each token pair.

    Token i at (r_i, c_i) in the window; the pair (i, j) maps to
    (r_i - r_j + w - 1) * (2w - 1) + (c_i - c_j + w - 1).
    """
    axis = torch.arange(window, device=_CPU)
    rows, cols = torch.meshgrid(axis, axis, indexing="ij")
    r, c = rows.reshape(-1), cols.reshape(-1)
    dr = r[:, None] - r[None, :] + window - 1
    dc = c[:, None] - c[None, :] + window - 1
    return dr * (2 * window - 1) + dc


def shifted_window_mask(height: int, width: int, window: int, shift: int) -> Tensor:
    """(nW, w*w, w*w) additive mask of a cyclically shifted window partition.

    After rolling the grid by -shift on both axes, tokens that were not neighbours before
    the roll (they come from different bands: [0, H-w), [H-w, H-shift), [H-shift, H), and
    likewise for columns) must not attend to each other: -100 between them, 0 otherwise.
    """

    def bands(n: int) -> Tensor:
        band = torch.zeros(n, dtype=torch.long, device=_CPU)
        band[n - window : n - shift] = 1
        band[n - shift :] = 2
        return band

    region = bands(height)[:, None] * 3 + bands(width)[None, :]  # (H, W)
    windows = partition(region[None, :, :, None], window).reshape(-1, window * window)
    differs = windows[:, None, :] != windows[:, :, None]
    return torch.zeros(differs.shape, device=_CPU).masked_fill(differs, -100.0)


def partition(x: Tensor, window: int) -> Tensor:
    """(B, H, W, C) -> (B * nW, w, w, C), windows in row-major order within each image."""
    b, h, w, c = x.shape
    x = x.view(b, h // window, window, w // window, window, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window, window, c)


def onednn_linear_ok() -> bool:
    """Whether linear layers may use oneDNN's fused linear kernel (``mkldnn._linear_pointwise``,
    with GELU fused into the first MLP layer): present in this torch build, not switched off
    by ``AUDIOMOMENT_ONEDNN=0``, and equal to ``F.linear`` (+ ``F.gelu``) on a probe."""
    global _ONEDNN_OK
    if _ONEDNN_OK is None:
        _ONEDNN_OK = False
        op = getattr(torch.ops.mkldnn, "_linear_pointwise", None)
        if op is not None and os.environ.get("AUDIOMOMENT_ONEDNN", "1") != "0":
            try:
                with torch.inference_mode():
                    gen = torch.Generator().manual_seed(0)
                    x = torch.randn(2, 5, 16, generator=gen)
                    w, b = torch.randn(8, 16, generator=gen), torch.randn(8, generator=gen)
                    plain = F.gelu(F.linear(x, w, b))
                    fused = op(x, w, b, "gelu", [], "none")
                    nobias = op(x, w, None, "none", [], "")
                _ONEDNN_OK = bool(
                    torch.allclose(fused, plain, atol=1e-5)
                    and torch.allclose(nobias, F.linear(x, w), atol=1e-5)
                )
            except Exception:  # an unsupported build: plain torch
                _ONEDNN_OK = False
    return _ONEDNN_OK


_ONEDNN_OK: bool | None = None


def linear(x: Tensor, layer: nn.Linear, gelu: bool = False) -> Tensor:
    """``layer(x)``, then exact GELU when ``gelu``; through oneDNN's fused kernel when
    :func:`onednn_linear_ok` and no gradient is needed (inference on the CPU)."""
    if (
        x.device.type == "cpu"
        and not torch.is_grad_enabled()
        and x.dtype == layer.weight.dtype
        and x.dtype in (torch.float32, torch.bfloat16)
        and onednn_linear_ok()
    ):
        weight = layer.weight
        entry = _PACKED.get(layer)
        if entry is not None and entry[0].dtype == x.dtype and entry[1:] == _weight_stamp(layer):
            weight = entry[0]  # packed from exactly these values
        return torch.ops.mkldnn._linear_pointwise(
            x, weight, layer.bias, "gelu" if gelu else "none", [], "none" if gelu else ""
        )
    y = F.linear(x, layer.weight, layer.bias)
    return F.gelu(y) if gelu else y


#: Rows (tokens) the packed weight layout is chosen for; any row count works with it.
PACKING_ROWS = 1024


#: oneDNN-packed weights by layer, kept outside the modules so that copying or saving a
#: module never meets these opaque tensors.
_PACKED: weakref.WeakKeyDictionary[nn.Linear, tuple[Tensor, int, int]] = (
    weakref.WeakKeyDictionary()
)


def _weight_stamp(layer: nn.Linear) -> tuple[int, int]:
    """Identifies the weight's current values: its storage and in-place version."""
    return layer.weight.data_ptr(), layer.weight._version


def pack_linear_weight(layer: nn.Linear) -> None:
    """Keep ``layer.weight`` reordered into oneDNN's blocked layout for :func:`linear`
    (saves the reorder on every call; same results); dropped when it cannot be made."""
    _PACKED.pop(layer, None)
    if layer.weight.device.type != "cpu" or not onednn_linear_ok():
        return
    try:
        with torch.no_grad():
            packed = torch.ops.mkldnn._reorder_linear_weight(layer.weight.detach(), PACKING_ROWS)
            _PACKED[layer] = (packed, *_weight_stamp(layer))
    except Exception:  # a build without the reorder: the plain weight is used
        _PACKED.pop(layer, None)


class WindowAttention(nn.Module):
    """Multi-head self-attention inside each window, with a learned relative-position bias.

    Input (B, nW * N, C) in windowed order (N = w * w tokens per window); ``bias``:
    (heads, N, N) or (B * nW, heads, N, N), additive.
    """

    def __init__(self, dim: int, window: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.window_tokens = window * window
        self.scale = (dim // num_heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(
            torch.zeros((2 * window - 1) ** 2, num_heads)
        )
        self.register_buffer("relative_position_index", relative_position_index(window))
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def position_bias(self) -> Tensor:
        """(heads, N, N) bias from the table."""
        n = self.relative_position_index.shape[0]
        table = self.relative_position_bias_table[self.relative_position_index.reshape(-1)]
        return table.view(n, n, self.num_heads).permute(2, 0, 1).contiguous()

    def forward(self, x: Tensor, bias: Tensor) -> Tensor:
        b, length, c = x.shape
        n, heads = self.window_tokens, self.num_heads
        qkv = linear(x, self.qkv).view(-1, n, 3, heads, c // heads)  # (B * nW, N, 3, heads, hd)
        q, k, v = (qkv[:, :, i].transpose(1, 2) for i in range(3))  # strided views
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=self.scale)
        return linear(out.transpose(1, 2).reshape(b, length, c), self.proj)


class Mlp(nn.Module):
    """fc1 -> exact GELU -> fc2."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return linear(linear(x, self.fc1, gelu=True), self.fc2)


class SwinBlock(nn.Module):
    """Pre-norm (shifted-)window attention and MLP, both residual.

    (B, H*W, C) -> same, with tokens in this block's windowed order (:attr:`order`).
    """

    def __init__(
        self, dim: int, resolution: tuple[int, int], num_heads: int, window: int, shift: int,
        config: HTSATConfig,
    ) -> None:
        super().__init__()
        self.resolution = resolution
        if min(resolution) <= window:  # the whole grid is one window: no shift
            window, shift = min(resolution), 0
        self.window = window
        self.shift = shift
        self.norm1 = nn.LayerNorm(dim, eps=config.ln_eps)
        self.attn = WindowAttention(dim, window, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=config.ln_eps)
        self.mlp = Mlp(dim, int(dim * config.mlp_ratio))
        if shift > 0:
            self.register_buffer("attn_mask", shifted_window_mask(*resolution, window, shift))
        else:
            self.attn_mask = None
        #: (H*W,) grid index of each token in the order this block works on
        self.register_buffer("order", window_order(*resolution, window, shift), persistent=False)
        self._bias: Tensor | None = None
        self._batched_bias: dict[tuple[int, torch.dtype], Tensor] = {}

    def prepare(self) -> None:
        """Combine the position bias and the shift mask once (after the weights are loaded):
        (1, heads, N, N) without shift, (nW, heads, N, N) with it."""
        with torch.no_grad():
            bias = self.attn.position_bias()
            if self.attn_mask is not None:
                bias = bias[None] + self.attn_mask[:, None]
            self._bias = (bias[None] if bias.ndim == 3 else bias).contiguous()
        self._batched_bias = {}

    def bias_for(self, batch: int, dtype: torch.dtype, device: torch.device) -> Tensor:
        """The attention bias for a batch: per-window biases repeat for every item."""
        if self._bias is None or self.training or self._bias.device != device:
            self.prepare()
        bias = self._bias
        assert bias is not None
        if bias.shape[0] == 1:
            return bias.to(dtype)
        key = (batch, dtype)
        cached = self._batched_bias.get(key)
        if cached is None:  # safe under concurrent calls: at worst computed twice
            expanded = bias.to(dtype).expand(batch, *bias.shape)
            cached = expanded.reshape(-1, *bias.shape[1:]).contiguous()
            if len(self._batched_bias) >= 4:
                self._batched_bias = {}
            self._batched_bias[key] = cached
        return cached

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x), self.bias_for(x.shape[0], x.dtype, x.device))
        return x + self.mlp(self.norm2(x))


class PatchMerging(nn.Module):
    """2 x 2 neighbouring tokens -> one of twice the width: (B, H*W/4, 4C) -> (B, H*W/4, 2C).

    The caller gathers the four tokens (:func:`merge_order`); this applies LayerNorm over
    the 4C concatenation and a bias-free linear map.
    """

    def __init__(self, dim: int, config: HTSATConfig) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim, eps=config.ln_eps)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return linear(self.norm(x), self.reduction)


class Stage(nn.Module):
    """``depth`` Swin blocks (shift every other one), then optional patch merging.

    Input: tokens in the first block's order. Output: merged tokens in the order given by
    :meth:`set_output_order` (row-major by default), or, without merging, the last block's.
    """

    def __init__(
        self, dim: int, resolution: tuple[int, int], depth: int, num_heads: int,
        config: HTSATConfig, downsample: bool,
    ) -> None:
        super().__init__()
        window = config.window_size
        self.resolution = resolution
        self.blocks = nn.ModuleList(
            SwinBlock(dim, resolution, num_heads, window, 0 if i % 2 == 0 else window // 2,
                      config)
            for i in range(depth)
        )
        self.downsample = PatchMerging(dim, config) if downsample else None
        # name of the gather-index buffer before each block (None: already in its order)
        self._gathers: list[str | None] = [None]
        for i, (prev, block) in enumerate(zip(self.blocks[:-1], self.blocks[1:], strict=True)):
            index = inverse_order(prev.order.to(_CPU))[block.order.to(_CPU)]
            if torch.equal(index, torch.arange(index.numel(), device=_CPU)):
                self._gathers.append(None)
            else:
                self.register_buffer(f"gather_{i + 1}", index, persistent=False)
                self._gathers.append(f"gather_{i + 1}")
        self.set_output_order(None)

    @property
    def input_order(self) -> Tensor:
        """(H*W,) the token order the stage expects: its first block's."""
        return self.blocks[0].order

    def set_output_order(self, order: Tensor | None) -> None:
        """Emit merged tokens in ``order`` (grid indices at half resolution; None: row-major)."""
        if self.downsample is None:
            return
        merge = merge_order(*self.resolution)
        if order is not None:
            merge = merge[order.to(_CPU)]
        index = inverse_order(self.blocks[-1].order.to(_CPU))[merge.reshape(-1)]
        self.register_buffer("merge_index", index, persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        for gather, block in zip(self._gathers, self.blocks, strict=True):
            if gather is not None:
                x = x.index_select(1, getattr(self, gather))
            x = block(x)
        if self.downsample is None:
            return x
        b, length, c = x.shape
        x = x.index_select(1, self.merge_index).view(b, length // 4, 4 * c)
        return self.downsample(x)


class HTSAT(nn.Module):
    """The encoder: waveform (B, n_samples) at 44.1 kHz -> (B, 768) pooled latent.

    ``n_samples`` <= ``config.max_samples`` (a 1-s window is 44100 samples). Call
    :meth:`prepare` after loading weights; inference only.
    """

    def __init__(self, config: HTSATConfig | None = None) -> None:
        super().__init__()
        config = config or HTSATConfig()
        self.config = config
        self.spectrogram_extractor = PowerSpectrogram(config)
        self.logmel_extractor = LogMel(config)
        self.bn0 = nn.BatchNorm2d(config.n_mels, eps=config.bn_eps)
        self.patch_embed = PatchEmbed(config)
        grid = config.spec_size // config.patch_size
        stages = len(config.depths)
        self.layers = nn.ModuleList(
            Stage(
                config.embed_dim * 2**i, (grid // 2**i, grid // 2**i), config.depths[i],
                config.num_heads[i], config, downsample=i < stages - 1,
            )
            for i in range(stages)
        )
        for stage, following in zip(self.layers[:-1], self.layers[1:], strict=True):
            stage.set_output_order(following.input_order)
        self.norm = nn.LayerNorm(config.num_features, eps=config.ln_eps)

    def prepare(self) -> HTSAT:
        """Precompute the fused STFT kernel, every block's attention bias and the packed
        linear weights; eval mode. Call again after changing weights, dtype or device."""
        self.eval()
        self.spectrogram_extractor.prepare()
        for module in self.modules():
            if isinstance(module, SwinBlock):
                module.prepare()
            elif isinstance(module, nn.Linear):
                pack_linear_weight(module)
        return self

    def log_mel(self, wave: Tensor) -> Tensor:
        """(B, n_samples) -> (B, frames, n_mels) normalised log-mel, frames = n // hop + 1."""
        mel = self.logmel_extractor(self.spectrogram_extractor(wave))
        bn = self.bn0
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        return (mel - bn.running_mean) * scale + bn.bias

    def image(self, log_mel: Tensor) -> Tensor:
        """(B, frames, n_mels) -> (B, 1, S, S): stretch time to 1024 frames (bicubic,
        corners aligned), then stack the four 256-frame chunks along the mel axis."""
        cfg = self.config
        b, frames, mels = log_mel.shape
        target = cfg.image_frames
        if frames > target:
            raise ValueError(
                f"input too long: {frames} frames > {target} (at most {cfg.max_samples} samples)"
            )
        x = log_mel[:, None]
        if frames < target:
            x = F.interpolate(x, size=(target, mels), mode="bicubic", align_corners=True)
        # (B, 1, ratio * S, M) -> (B, 1, ratio, S, M) -> (B, 1, ratio, M, S) -> (B, 1, ratio*M, S)
        x = x.view(b, 1, cfg.freq_ratio, cfg.spec_size, mels).transpose(3, 4)
        return x.reshape(b, 1, cfg.freq_ratio * mels, cfg.spec_size)

    def tokens(self, image: Tensor) -> Tensor:
        """(B, 1, S, S) -> (B, L, C) normalised patch tokens in the first block's order."""
        x = self.patch_embed(image)  # (B, C, L) row-major
        x = x.index_select(2, self.layers[0].input_order).transpose(1, 2)
        return self.patch_embed.norm(x)

    def set_compute_dtype(self, dtype: torch.dtype) -> HTSAT:
        """Run the patch embedding and the transformer stages in ``dtype`` (float32, or
        bfloat16: lossy and faster on CPUs with bfloat16 support). The front end (STFT, mel,
        batch norm, image) and the final norm and pooling stay float32."""
        self.patch_embed.to(dtype)
        self.layers.to(dtype)
        return self.prepare()

    @property
    def compute_dtype(self) -> torch.dtype:
        return self.patch_embed.proj.weight.dtype

    def forward(self, wave: Tensor) -> Tensor:
        if wave.ndim != 2:
            raise ValueError(f"expected a (batch, samples) waveform, got shape {tuple(wave.shape)}")
        image = self.image(self.log_mel(wave.float()))
        x = self.tokens(image.to(self.compute_dtype))
        for stage in self.layers:
            x = stage(x)
        return self.norm(x.float()).mean(dim=1)


def expected_keys(config: HTSATConfig | None = None) -> list[str]:
    """The state-dict keys the encoder needs (without the checkpoint's encoder prefix)."""
    with torch.device("meta"):
        model = HTSAT(config)
    return list(model.state_dict().keys())

