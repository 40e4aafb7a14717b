"""Regression against outputs of the upstream Hallo code stored in tests/data (see its 'about')."""

from pathlib import Path

import torch

from tests.support.tiny_unets import TinyParts, randomize, rel, run_clip, tiny_inputs

DATA = Path(__file__).parent / "data" / "upstream_hallo_tiny.pt"


def _setup():
    exp = torch.load(DATA, weights_only=True)
    parts = TinyParts().eval()
    randomize(parts)
    return exp, parts, tiny_inputs(exp["config"]["frames"], exp["config"]["latent"])


def test_fixture_is_labelled():
    exp = torch.load(DATA, weights_only=True)
    assert "upstream Hallo code" in exp["about"] and "commit" in exp["about"]


def test_denoiser_matches_upstream_plain_and_fast():
    exp, parts, inp = _setup()
    v_plain, pieces = run_clip(parts, inp, fast=False)
    assert rel(pieces["enc"], exp["face_tokens"]) < 1e-6
    assert rel(pieces["feat"], exp["face_features"]) < 1e-6
    assert set(pieces["banks"]) == set(exp["bank_norms"])
    assert rel(v_plain, exp["v"]) < 1e-4
    v_fast, _ = run_clip(parts, inp, fast=True)
    assert rel(v_fast, exp["v"]) < 1e-4


def test_reference_banks_match_upstream_norms():
    exp, parts, inp = _setup()
    with torch.no_grad():
        enc = torch.cat([parts.imageproj(torch.zeros_like(inp["emb"])), parts.imageproj(inp["emb"])])
        banks = parts.reference_unet(inp["ref_latents"].repeat(2, 1, 1, 1), 0, enc, bank_dtype=None)
    for name, norm in exp["bank_norms"].items():
        assert abs(banks[name].norm().item() - norm) <= 1e-5 * norm, name
