"""The projection heads against a direct torch computation of the formula, and checkpoint
reading in the official key layout."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from audiomoment.clap.checkpoint import (
    head_from_state,
    head_state,
    load_projection_heads,
    save_checkpoint,
)
from audiomoment.clap.projection import project
from audiomoment.errors import InputError
from audiomoment.testing.random_clap import random_projection_head


def torch_head(x: np.ndarray, state: dict, prefix: str) -> np.ndarray:
    """e1 = W1 x; out = LayerNorm(e1 + W2 gelu(e1)), then L2-normalised — in torch."""
    w1 = state[f"{prefix}.linear1.weight"]
    w2 = state[f"{prefix}.linear2.weight"]
    ln = torch.nn.LayerNorm(w1.shape[0])
    with torch.no_grad():
        ln.weight.copy_(state[f"{prefix}.layer_norm.weight"])
        ln.bias.copy_(state[f"{prefix}.layer_norm.bias"])
        xt = torch.from_numpy(x).double()
        e1 = xt @ w1.double().T
        out = ln.double()(e1 + torch.nn.functional.gelu(e1) @ w2.double().T)
        out = out / out.norm(dim=-1, keepdim=True)
    return out.numpy()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    rng = np.random.default_rng(0)
    state = {**head_state(random_projection_head(rng), "audio"),
             **head_state(random_projection_head(rng), "text"),
             "caption_encoder.base.wte.weight": torch.zeros(3, 4)}  # other keys are ignored
    path = tmp_path_factory.mktemp("ckpt") / "CLAP_weights_2023.pth"
    save_checkpoint(path, state)
    return path, state


def test_projection_matches_torch(checkpoint):
    path, state = checkpoint
    heads = load_projection_heads(path)
    x = np.random.default_rng(1).normal(size=(7, 768)).astype(np.float32)
    for modality, prefix in (("audio", "audio_encoder.projection"),
                             ("text", "caption_encoder.projection")):
        ours = project(x, heads[modality])
        expected = torch_head(x, state, prefix)
        assert ours.shape == (7, 1024) and ours.dtype == np.float32
        np.testing.assert_allclose(ours, expected, atol=2e-6)
        np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-6)
    # a single vector keeps its shape
    assert project(x[0], heads["text"]).shape == (1024,)


def head_on_torch_threads(x: np.ndarray, head) -> np.ndarray:
    """The head's float32 arithmetic as ``project`` writes it, on torch's current threads."""
    f = torch.nn.functional
    with torch.inference_mode():
        e1 = torch.from_numpy(x) @ torch.from_numpy(head.linear1).T
        out = f.layer_norm(e1 + f.gelu(e1) @ torch.from_numpy(head.linear2).T,
                           (head.out_dim,), torch.from_numpy(head.ln_weight),
                           torch.from_numpy(head.ln_bias), float(head.ln_eps))
        return (out / torch.linalg.vector_norm(out, dim=-1, keepdim=True)).numpy()


def test_one_row_on_one_thread_gives_the_values_of_all_threads(checkpoint):
    """A query is projected on one thread; its values must be those of the configured
    thread count, and the count must be restored."""
    path, _ = checkpoint
    head = load_projection_heads(path)["text"]
    x = np.random.default_rng(2).normal(size=(200, 768)).astype(np.float32)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        ours = np.stack([project(v, head) for v in x])
        assert torch.get_num_threads() == 2
        direct = np.stack([head_on_torch_threads(v[None], head)[0] for v in x])
        np.testing.assert_array_equal(ours, direct)
    finally:
        torch.set_num_threads(before)


def test_checkpoint_errors(tmp_path, checkpoint):
    _, state = checkpoint
    with pytest.raises(InputError, match="not found"):
        load_projection_heads(tmp_path / "missing.pth")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match=r"junk\.pth: not a readable torch checkpoint"):
        load_projection_heads(junk)
    partial = {k: v for k, v in state.items() if "linear2" not in k}
    with pytest.raises(InputError, match=r"missing key audio_encoder\.projection\.linear2\.weight"):
        head_from_state(partial, "audio", "x.pth")
    bad = dict(state)
    bad["audio_encoder.projection.linear2.weight"] = torch.zeros(5, 5)
    with pytest.raises(InputError, match="inconsistent shapes"):
        head_from_state(bad, "audio", "x.pth")


def test_wrong_input_dimension_is_rejected(checkpoint):
    heads = load_projection_heads(checkpoint[0])
    with pytest.raises(ValueError, match="expected 768-d"):
        project(np.zeros((2, 512), np.float32), heads["audio"])
