"""Hallo diffusion models, checkpoint-compatible with the official ``net.pth``.

Forward API (shapes for the default recipe: B=2 CFG rows, F=16 frames, latents h=w=64):

    net = build_hallo_net(unet_config=None, operations=None, device=None, dtype=None)
    load_hallo_weights(net, "hallo/net.pth")          # hallo_core.io.checkpoints, strict

    # face tokens, uncond first (upstream CFG convention): [2, 4, 768]
    face_tokens = net.imageproj(torch.cat([torch.zeros_like(emb), emb]))   # emb [1, 512]
    # audio tokens: zeros AFTER the projection for the uncond row: [2, F, 32, 768]
    tok = net.audioproj(window)                                # window [1, F, 5, 12, 768]
    audio_tokens = torch.cat([torch.zeros_like(tok), tok])
    # face-locator residual, zeros for the uncond row: [2, 320, F, h, w]
    feat = net.face_locator(face_region)                       # [1, 3, F, 8h, 8w] (or F=1, then expand)
    face_features = torch.cat([torch.zeros_like(feat), feat])

    # reference pass, once per clip, timestep 0, latents [R, M1, M2] x 2 = [6, 4, h, w];
    # face tokens are tiled [u, c, u, c, u, c] inside, as upstream does.
    banks = net.reference_unet(ref_latents.repeat(2, 1, 1, 1), 0, face_tokens)
    # -> dict {block name: [6, h_l*w_l, C_l]}, cast to fp16 like upstream's reader.update()

    # faithful-fast path: project reference K/V once per clip, reuse for every step
    ref = net.denoising_unet.prepare_reference(banks)         # or pass `banks` itself: plain path
    v = net.denoising_unet(
        torch.cat([latents, latents]),                         # [2, 4, F, h, w]
        t,                                                     # int / 0-d / [1] / [2] tensor
        face_tokens,                                           # [2, 4, 768]
        reference=ref,                                         # dict (plain) or ReferenceState (fast)
        face_features=face_features,                           # [2, 320, F, h, w] or None
        full_masks=full, face_masks=face, lip_masks=lip,       # 4 levels each, [2F, hw_l] or [1, hw_l]
        audio_tokens=audio_tokens,                             # [2, F, 32, 768]
        motion_scale=(pose, face, lip),                        # or None (= plain sum)
    )                                                          # -> [2, 4, F, h, w]
    v = v_u + cfg * (v_c - v_u)                                # v.chunk(2)

Batch rows ``0 .. num_uncond-1`` (default B//2) are unconditional: their spatial
self-attention ignores the reference; all rows keep the motion-frame prefix.

Where each class stands upstream. Hallo: ``hallo/models/*`` (denoiser / reference UNet where
they differ; the reference side uses diffusers 0.27 2D blocks). Hallo2 upscaler: basicsr and
facelib as vendored in the Hallo2 repository.

==============================  ========================================================
here                            upstream
==============================  ========================================================
``HalloNet``                    ``Net`` (scripts/inference.py)
``ReferenceUNet``               ``UNet2DConditionModel``
``DenoisingUNet``               ``UNet3DConditionModel``
``UNetLevel``, down_blocks      ``CrossAttnDownBlock3D``, ``DownBlock3D`` / 2D
``UNetLevel``, mid_block        ``UNetMidBlock3DCrossAttn`` / ``UNetMidBlock2DCrossAttn``
``UNetLevel``, up_blocks        ``UpBlock3D``, ``CrossAttnUpBlock3D`` / 2D
``ResnetBlock``                 ``ResnetBlock3D`` / ``ResnetBlock2D``
``Downsample``, ``Upsample``    ``Downsample3D``, ``Upsample3D`` / 2D
``TimestepEmbedding``           ``TimestepEmbedding``
``timestep_embedding``          ``get_timestep_embedding``
``Attention``                   diffusers ``Attention``
``FeedForward``, ``GEGLU``      diffusers ``FeedForward``, ``GEGLU``
``SpatialTransformer``          ``Transformer3DModel`` / ``Transformer2DModel``
``SpatialBlock``                ``TemporalBasicTransformerBlock`` / ``BasicTransformerBlock``
``forward_write``, ``_read``    ``ReferenceAttentionControl`` writer / reader
``ReferenceState``              the reader's bank, projected once per clip (no upstream twin)
``AudioTransformer``            ``Transformer3DModel(use_audio_module=True)``
``AudioBlock``                  ``AudioTemporalBasicTransformerBlock``
``MotionModule``                ``VanillaTemporalModule``
``TemporalTransformer``         ``TemporalTransformer3DModel``
``TemporalBlock``               ``TemporalTransformerBlock``
``TemporalAttention``           ``VersatileAttention``
``PositionalEncoding``          ``PositionalEncoding``
``FaceLocator``                 ``FaceLocator``
``ImageProj``                   ``ImageProjModel``
``AudioProj``                   ``AudioProjModel``
``TemporalCodeFormer``          ``CodeFormer`` (basicsr/archs/codeformer_arch.py)
``TransformerSALayer``          ``TransformerSALayer``
``FuseSftBlock``                ``Fuse_sft_block``
codeformer ``Encoder`` etc.     ``Encoder``, ``Generator``, ``ResBlock``, ``AttnBlock``,
                                ``VectorQuantizer`` (basicsr/archs/vqgan_arch.py)
``MultiheadAttention``          ``torch.nn.MultiheadAttention``
``RetinaFace``                  ``RetinaFace`` (facelib/detection/retinaface)
``FPN``, ``SSH``                ``FPN``, ``SSH``
``_Head``                       ``ClassHead``, ``BboxHead``, ``LandmarkHead``
``ResNetBody``, ``Bottleneck``  torchvision ``resnet50`` body, ``Bottleneck``
``ParseNet``, ``ConvLayer``     ``ParseNet``, ``ConvLayer`` (facelib/parsing/parsenet.py)
``ResidualBlock``, ``_Norm``    ``ResidualBlock``, ``NormLayer``
``RRDBNet``, ``RRDB``           ``RRDBNet``, ``RRDB`` (basicsr/archs/rrdbnet_arch.py)
``ResidualDenseBlock``          ``ResidualDenseBlock``
==============================  ========================================================

Every constructor takes ``operations``, the layer factory (see ``.operations``).
"""

from .._lazy import lazy_exports

_EXPORTS = {
    ".config": ("SD15_UNET_CONFIG", "load_unet_config"),
    ".denoising_unet": ("DenoisingUNet", "ReferenceState"),
    ".net": ("HalloNet", "build_hallo_net"),
    ".projections": ("AudioProj", "FaceLocator", "ImageProj"),
    ".reference_unet": ("ReferenceUNet",),
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = [name for names in _EXPORTS.values() for name in names]
