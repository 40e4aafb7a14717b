"""RetinaFace with a ResNet-50 backbone (facelib's ``retinaface_resnet50``): network, prior boxes,
box/landmark decoding, NMS and the single-image ``detect_faces`` used by FaceRestoreHelper.

Module names follow ``facelib/detection_Resnet50_Final.pth`` after stripping its ``module.``
prefix (see hallo_core/io/upscaler_weights.py). Defaults build the released network (456 keys).
"""
from __future__ import annotations

import math
from typing import Any, List, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..operations import batch_norm, resolve_operations

MIN_SIZES: Tuple[Tuple[int, int], ...] = ((16, 32), (64, 128), (256, 512))
STEPS: Tuple[int, ...] = (8, 16, 32)
VARIANCE: Tuple[float, float] = (0.1, 0.2)
MEAN_BGR: Tuple[float, float, float] = (104.0, 117.0, 123.0)


class Bottleneck(nn.Module):
    """torchvision's ResNet-50 bottleneck (stride on the 3x3 conv)."""

    def __init__(self, cin: int, width: int, stride: int, downsample: bool, operations: Any) -> None:
        super().__init__()
        ops = resolve_operations(operations)
        cout = width * 4
        self.conv1 = ops.Conv2d(cin, width, 1, bias=False)
        self.bn1 = batch_norm(ops, width)
        self.conv2 = ops.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = batch_norm(ops, width)
        self.conv3 = ops.Conv2d(width, cout, 1, bias=False)
        self.bn3 = batch_norm(ops, cout)
        if downsample:
            self.downsample = nn.Sequential(ops.Conv2d(cin, cout, 1, stride, bias=False), batch_norm(ops, cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = self.downsample(x) if hasattr(self, "downsample") else x
        return F.relu(out + identity)


class ResNetBody(nn.Module):
    """Stem + layer1..layer4; returns the layer2/3/4 features (strides 8, 16, 32)."""

    def __init__(self, base: int, layers: Sequence[int], operations: Any) -> None:
        super().__init__()
        ops = resolve_operations(operations)
        self.conv1 = ops.Conv2d(3, base, 7, 2, 3, bias=False)
        self.bn1 = batch_norm(ops, base)
        cin = base
        for i, n in enumerate(layers):
            width = base * 2 ** i
            blocks = []
            for j in range(n):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(Bottleneck(cin, width, stride, j == 0, ops))
                cin = width * 4
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2, 1)
        x = self.layer1(x)
        c2 = self.layer2(x)
        c3 = self.layer3(c2)
        return [c2, c3, self.layer4(c3)]


def _conv_bn(operations: Any, cin: int, cout: int, k: int) -> nn.Sequential:
    return nn.Sequential(operations.Conv2d(cin, cout, k, 1, k // 2, bias=False), batch_norm(operations, cout))


def _act(x: torch.Tensor, leaky: float) -> torch.Tensor:
    return F.leaky_relu(x, leaky) if leaky else F.relu(x)


class FPN(nn.Module):
    def __init__(self, in_list: Sequence[int], out_ch: int, operations: Any) -> None:
        super().__init__()
        ops = resolve_operations(operations)
        # upstream: leaky slope 0.1 only for narrow (<= 64 channel) heads, plain ReLU otherwise
        self.leaky = 0.1 if out_ch <= 64 else 0.0
        self.output1 = _conv_bn(ops, in_list[0], out_ch, 1)
        self.output2 = _conv_bn(ops, in_list[1], out_ch, 1)
        self.output3 = _conv_bn(ops, in_list[2], out_ch, 1)
        self.merge1 = _conv_bn(ops, out_ch, out_ch, 3)
        self.merge2 = _conv_bn(ops, out_ch, out_ch, 3)

    def forward(self, feats: List[torch.Tensor]) -> List[torch.Tensor]:
        a = self.leaky
        o1, o2, o3 = (_act(m(f), a) for m, f in zip((self.output1, self.output2, self.output3), feats))
        o2 = _act(self.merge2(o2 + F.interpolate(o3, size=o2.shape[-2:], mode="nearest")), a)
        o1 = _act(self.merge1(o1 + F.interpolate(o2, size=o1.shape[-2:], mode="nearest")), a)
        return [o1, o2, o3]


class SSH(nn.Module):
    def __init__(self, cin: int, cout: int, operations: Any) -> None:
        super().__init__()
        ops = resolve_operations(operations)
        self.leaky = 0.1 if cout <= 64 else 0.0
        self.conv3X3 = _conv_bn(ops, cin, cout // 2, 3)
        self.conv5X5_1 = _conv_bn(ops, cin, cout // 4, 3)
        self.conv5X5_2 = _conv_bn(ops, cout // 4, cout // 4, 3)
        self.conv7X7_2 = _conv_bn(ops, cout // 4, cout // 4, 3)
        self.conv7x7_3 = _conv_bn(ops, cout // 4, cout // 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c5_1 = _act(self.conv5X5_1(x), self.leaky)
        c7_2 = _act(self.conv7X7_2(c5_1), self.leaky)
        return F.relu(torch.cat([self.conv3X3(x), self.conv5X5_2(c5_1), self.conv7x7_3(c7_2)], dim=1))


class _Head(nn.Module):
    def __init__(self, cin: int, per_anchor: int, anchors: int, operations: Any) -> None:
        super().__init__()
        ops = resolve_operations(operations)
        self.per_anchor = per_anchor
        self.conv1x1 = ops.Conv2d(cin, anchors * per_anchor, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1x1(x).permute(0, 2, 3, 1)
        return out.reshape(out.shape[0], -1, self.per_anchor)


class RetinaFace(nn.Module):
    """forward: x [N, 3, H, W] BGR float 0..255 minus (104, 117, 123) ->
    (loc [N, P, 4], conf [N, P, 2] softmaxed, landmarks [N, P, 10]); P = prior_boxes(H, W) rows.

    Defaults build the released ResNet-50 model; ``base``, ``layers`` and ``out_channel`` shrink it
    for tests (upstream switches FPN/SSH to LeakyReLU(0.1) when ``out_channel <= 64``).
    """

    def __init__(self, base: int = 64, layers: Sequence[int] = (3, 4, 6, 3), out_channel: int = 256,
                 anchors: int = 2, operations: Any = None) -> None:
        super().__init__()
        ops = resolve_operations(operations)
        self.body = ResNetBody(base, layers, ops)
        in_list = [base * 8, base * 16, base * 32]
        self.fpn = FPN(in_list, out_channel, ops)
        self.ssh1 = SSH(out_channel, out_channel, ops)
        self.ssh2 = SSH(out_channel, out_channel, ops)
        self.ssh3 = SSH(out_channel, out_channel, ops)
        self.ClassHead = nn.ModuleList([_Head(out_channel, 2, anchors, ops) for _ in range(3)])
        self.BboxHead = nn.ModuleList([_Head(out_channel, 4, anchors, ops) for _ in range(3)])
        self.LandmarkHead = nn.ModuleList([_Head(out_channel, 10, anchors, ops) for _ in range(3)])

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        fpn = self.fpn(self.body(x))
        feats = [self.ssh1(fpn[0]), self.ssh2(fpn[1]), self.ssh3(fpn[2])]
        loc = torch.cat([h(f) for h, f in zip(self.BboxHead, feats)], dim=1)
        conf = torch.cat([h(f) for h, f in zip(self.ClassHead, feats)], dim=1)
        landm = torch.cat([h(f) for h, f in zip(self.LandmarkHead, feats)], dim=1)
        return loc, F.softmax(conf, dim=-1), landm


def prior_boxes(height: int, width: int, min_sizes: Sequence[Sequence[int]] = MIN_SIZES,
                steps: Sequence[int] = STEPS) -> torch.Tensor:
    """Anchors [P, 4] as normalised (cx, cy, w, h), ordered level, row, column, min_size.

    Computed in float64 and rounded once to float32, like upstream's Python-float PriorBox.
    """
    out = []
    for sizes, step in zip(min_sizes, steps):
        fh, fw = math.ceil(height / step), math.ceil(width / step)
        cy = (np.arange(fh, dtype=np.float64) + 0.5) * step / height
        cx = (np.arange(fw, dtype=np.float64) + 0.5) * step / width
        gy, gx = np.meshgrid(cy, cx, indexing="ij")
        k = len(sizes)
        level = np.empty((fh, fw, k, 4), dtype=np.float64)
        level[..., 0] = gx[..., None]
        level[..., 1] = gy[..., None]
        level[..., 2] = np.asarray(sizes, dtype=np.float64) / width
        level[..., 3] = np.asarray(sizes, dtype=np.float64) / height
        out.append(level.reshape(-1, 4))
    return torch.from_numpy(np.concatenate(out).astype(np.float32))


def decode(loc: torch.Tensor, priors: torch.Tensor, variances: Sequence[float] = VARIANCE) -> torch.Tensor:
    """Regression offsets [P, 4] -> boxes (x1, y1, x2, y2), normalised to the input size."""
    boxes = torch.cat((priors[:, :2] + loc[:, :2] * variances[0] * priors[:, 2:],
                       priors[:, 2:] * torch.exp(loc[:, 2:] * variances[1])), 1)
    boxes[:, :2] -= boxes[:, 2:] / 2
    boxes[:, 2:] += boxes[:, :2]
    return boxes


def decode_landm(pre: torch.Tensor, priors: torch.Tensor, variances: Sequence[float] = VARIANCE) -> torch.Tensor:
    """Landmark offsets [P, 10] -> 5 (x, y) points, normalised to the input size."""
    pts = [priors[:, :2] + pre[:, 2 * k:2 * k + 2] * variances[0] * priors[:, 2:] for k in range(5)]
    return torch.cat(pts, dim=1)


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy NMS with torchvision.ops.nms semantics (float32 boxes, areas without +1, IoU > threshold).

    Returns kept indices in descending score order (stable for equal scores).
    """
    if boxes.numel() == 0:
        return torch.zeros(0, dtype=torch.long)
    boxes = boxes.float()
    order = torch.sort(scores.float(), descending=True, stable=True).indices
    x1, y1, x2, y2 = boxes.unbind(1)
    areas = (x2 - x1) * (y2 - y1)
    suppressed = torch.zeros(len(order), dtype=torch.bool)
    keep = []
    for pos in range(len(order)):
        if suppressed[pos]:
            continue
        i = order[pos]
        keep.append(int(i))
        rest = order[pos + 1:]
        w = (torch.minimum(x2[i], x2[rest]) - torch.maximum(x1[i], x1[rest])).clamp(min=0)
        h = (torch.minimum(y2[i], y2[rest]) - torch.maximum(y1[i], y1[rest])).clamp(min=0)
        inter = w * h
        iou = inter / (areas[i] + areas[rest] - inter)
        # float32 IoU compared in double, as torchvision's kernel does (matters at IoU == threshold)
        suppressed[pos + 1:] |= iou.double() > iou_threshold
    return torch.tensor(keep, dtype=torch.long)


@torch.no_grad()
def detect_faces(net: RetinaFace, image: Any, conf_threshold: float = 0.8, nms_threshold: float = 0.4,
                 channel_order: str = "rgb") -> np.ndarray:
    """facelib ``RetinaFace.detect_faces`` at ``use_origin_size=True`` (no internal resize).

    image: [H, W, 3] uint8 (numpy or torch), RGB by default (``channel_order="bgr"`` for OpenCV
    frames). Returns float32 [n, 15] rows ``x1, y1, x2, y2, score, lx0, ly0, ..., lx4, ly4`` in
    input pixels, descending score. Runs on the device/dtype of ``net``'s parameters.
    """
    arr = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    if channel_order.lower() == "rgb":
        arr = arr[..., ::-1]
    p = next(net.parameters())
    x = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32)).permute(2, 0, 1).unsqueeze(0)
    x = x - torch.tensor(MEAN_BGR, dtype=torch.float32).view(1, 3, 1, 1)
    h, w = x.shape[-2:]
    loc, conf, landm = net(x.to(p.device, p.dtype))
    loc, conf, landm = loc[0].float().cpu(), conf[0].float().cpu(), landm[0].float().cpu()

    priors = prior_boxes(h, w)
    boxes = (decode(loc, priors) * torch.tensor([w, h, w, h], dtype=torch.float32)).numpy()
    lms = (decode_landm(landm, priors) * torch.tensor([w, h] * 5, dtype=torch.float32)).numpy()
    scores = conf[:, 1].numpy()

    inds = np.where(scores > conf_threshold)[0]
    boxes, lms, scores = boxes[inds], lms[inds], scores[inds]
    order = scores.argsort()[::-1]
    boxes, lms, scores = boxes[order], lms[order], scores[order]
    dets = np.hstack((boxes, scores[:, None])).astype(np.float32, copy=False)
    keep = nms(torch.from_numpy(dets[:, :4]), torch.from_numpy(dets[:, 4]), nms_threshold).numpy()
    return np.concatenate((dets[keep], lms[keep]), axis=1).astype(np.float32, copy=False)
