"""The unconditional row's zero audio tokens: skipping its audio cross-attention is exact.

With K = V = 0 the attention output is exactly to_out's bias, so the denoiser output must be
identical, not merely close, with and without ``zero_audio_rows``.
"""

import pytest
import torch

from tests.support.tiny_engine import build_tiny_net

FRAMES, SIDE = 4, 16


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_zero_audio_rows_is_bit_exact(dtype):
    torch.manual_seed(0)
    unet = build_tiny_net(dtype=dtype).eval().denoising_unet
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, FRAMES, SIDE, SIDE, generator=g, dtype=dtype)
    ctx_dim = unet.mid_block.attentions[0].transformer_blocks[0].attn2.to_k.in_features
    audio_dim = unet.mid_block.audio_modules[0].transformer_blocks[0].attn2_0.to_k.in_features
    ctx = torch.randn(2, 4, ctx_dim, generator=g, dtype=dtype)
    tok = torch.randn(1, FRAMES, 32, audio_dim, generator=g, dtype=dtype)
    audio = torch.cat([torch.zeros_like(tok), tok])
    masks = [[torch.rand(2 * FRAMES, (SIDE >> lv) ** 2, generator=g, dtype=dtype) for lv in range(4)]
             for _ in range(3)]
    kw = dict(audio_tokens=audio, motion_scale=(1.0, 0.7, 1.3))
    with torch.no_grad():
        full = unet(x, torch.tensor(500), ctx, None, None, *masks, **kw)
        hoisted = unet(x, torch.tensor(500), ctx, None, None, *masks, zero_audio_rows=1, **kw)
        # the guarantee is the caller's: with non-zero tokens in the row the shortcut is wrong
        wrong = unet(x, torch.tensor(500), ctx, None, None, *masks, zero_audio_rows=1,
                     **dict(kw, audio_tokens=torch.cat([tok, tok])))
        both = unet(x, torch.tensor(500), ctx, None, None, *masks, **dict(kw, audio_tokens=torch.cat([tok, tok])))
    assert torch.equal(full, hoisted)
    assert (wrong - both)[:1].abs().max() > 1e-6
