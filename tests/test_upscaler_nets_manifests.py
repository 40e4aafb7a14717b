"""The full-size networks reproduce the official checkpoints' state dicts (keys, order, shapes)."""
import pytest
import torch

from hallo_core.models.upscaler import ParseNet, RetinaFace, RRDBNet, TemporalCodeFormer


def _read_manifest(path):
    rows = []
    for line in path.read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        key, shape = line.split("\t")
        rows.append((key, tuple(int(d) for d in shape.split("x")) if shape else ()))
    return rows


@pytest.mark.parametrize("tsv,build,n_params", [
    ("hallo2_codeformer_temporal_keys.tsv", TemporalCodeFormer, 113_037_763),
    ("retinaface_resnet50_keys.tsv", RetinaFace, 27_293_600),
    ("parsenet_keys.tsv", ParseNet, 21_303_254),
    ("rrdbnet_x2_keys.tsv", RRDBNet, 16_703_171),
])
def test_full_config_matches_manifest(reference_dir, tsv, build, n_params):
    with torch.device("meta"):
        model = build()
    ours = [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
    ref = _read_manifest(reference_dir / tsv)
    assert len(ours) == len(ref)
    assert ours == ref
    assert sum(p.numel() for p in model.parameters()) == n_params


def test_codeformer_temporal_keys_are_the_documented_additions(reference_dir):
    with torch.device("meta"):
        model = TemporalCodeFormer()
    temp = {k: v for k, v in model.state_dict().items() if ".temp_" in k}
    assert len(temp) == 108
    assert sum(v.numel() for v in temp.values()) == 18_925_056

