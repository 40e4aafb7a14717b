"""``hallo doctor``: what is installed, what the models folder holds, and whether the pipeline runs.

Every file check reads headers and key lists only (safetensors header, the pickle of a torch zip
archive through ``mmap``), so a 5 GB checkpoint is checked in about a second.
"""

from __future__ import annotations

import json
import shlex
import shutil
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

from ..assets.layout import CHECKPOINT_FILES, rel_path

BUNDLES = ("hallo", "hallo2", "hallo2-4k")
# what each job needs the bundle for; generate needs hallo or hallo2, upscale hallo2-4k
BUNDLE_USE = {"hallo": "generate", "hallo2": "generate --hallo2", "hallo2-4k": "upscale (optional)"}
# key prefixes each checkpoint must hold, read from the released files' key lists
_NET = ("reference_unet.", "denoising_unet.", "face_locator.", "imageproj.", "audioproj.")
EXPECTED_PREFIXES: Dict[str, Tuple[str, ...]] = {CHECKPOINT_FILES[k]: v for k, v in {
    "hallo": _NET,
    "hallo2": _NET,
    "codeformer": ("params_ema/encoder.", "params_ema/generator.", "params_ema/ft_layers."),
    "detector": ("body.", "ClassHead."),
    "parser": ("encoder.", "decoder."),
    "bg": ("params_ema/conv_first.",),
    "vae": ("encoder.", "decoder."),
}.items()}
TASK_MEMBERS = ("face_detector.tflite", "face_landmarks_detector.tflite")


@dataclass
class FileCheck:
    path: str  # relative to the models folder
    component: str
    repo: str
    status: str  # ok | missing | corrupt
    detail: str = ""
    optional: bool = False

    def fix(self, root: Path) -> str:
        return (f"{download_command(root, self.component)}   "
                f"or https://huggingface.co/{self.repo}/resolve/main/{self.path}")


def cli_command() -> str:
    """How to start this CLI in this install, for the fix lines: ``hallo`` when the entry point of
    this interpreter's environment is on PATH, else ``python -m hallo_core`` (this interpreter's
    full path when ``python`` on PATH is another one)."""
    here = Path(sys.executable).parent
    hallo = shutil.which("hallo")
    if hallo and Path(hallo).parent == here:
        return "hallo"
    python = shutil.which("python")
    if python and Path(python).parent == here:
        return "python -m hallo_core"
    return f"{shlex.quote(sys.executable)} -m hallo_core"


def download_command(root: Path, which: str) -> str:
    """The download command for ``which`` into ``root``, runnable as printed."""
    return f"{cli_command()} download --models {shlex.quote(str(root))} --which {which}"


@dataclass
class Report:
    lines: List[str] = field(default_factory=list)
    problems: List[str] = field(default_factory=list)
    files: List[FileCheck] = field(default_factory=list)
    ready: Dict[str, bool] = field(default_factory=dict)

    def add(self, status: str, text: str) -> None:
        self.lines.append(f"  {status:<8} {text}")
        if status in ("MISSING", "CORRUPT", "PROBLEM"):
            self.problems.append(text)


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024.0
    return str(n)


def _torch_keys(path: Path) -> List[str]:
    """Keys of a torch checkpoint, nested one level ("params_ema/conv_first.weight")."""
    import torch

    if not zipfile.is_zipfile(path):
        raise ValueError("not a torch zip archive (truncated download?)")
    sd = torch.load(str(path), map_location="cpu", mmap=True, weights_only=True)
    if not isinstance(sd, dict):
        raise ValueError(f"holds a {type(sd).__name__}, not a state dict")
    keys = []
    for k, v in sd.items():
        keys += [f"{k}/{kk}" for kk in v] if isinstance(v, dict) else [str(k)]
    return keys


def _safetensors_keys(path: Path) -> List[str]:
    with open(path, "rb") as fh:
        n = int.from_bytes(fh.read(8), "little")
        if not 0 < n < 100 * 2**20:
            raise ValueError("no safetensors header")
        header = json.loads(fh.read(n))
    return [k for k in header if k != "__metadata__"]


def check_file(path: Path, rel: str) -> str:
    """A short description of what the file holds; raises ValueError (or the reader's error) if corrupt."""
    suffix = path.suffix
    if suffix == ".json":
        with open(path, encoding="utf-8") as fh:
            json.load(fh)
        return "json"
    if suffix in (".pth", ".safetensors"):
        keys = _torch_keys(path) if suffix == ".pth" else _safetensors_keys(path)
        if not keys:
            raise ValueError("holds no tensors")
        want = EXPECTED_PREFIXES.get(rel, ())
        absent = [p for p in want if not any(k.startswith(p) or k.startswith("module." + p) for k in keys)]
        if absent:
            raise ValueError(f"no keys {', '.join(absent)}: not the expected checkpoint")
        return f"{len(keys)} tensors"
    if suffix == ".onnx":
        with open(path, "rb") as fh:
            head = fh.read(2)
        if len(head) < 2 or head[0] != 0x08:  # an ONNX ModelProto starts with field 1 (ir_version)
            raise ValueError("not an ONNX model")
        return "onnx"
    if suffix == ".task":
        with zipfile.ZipFile(path) as z:
            names = set(z.namelist())
        absent = [m for m in TASK_MEMBERS if m not in names]
        if absent:
            raise ValueError(f"bundle lacks {', '.join(absent)}")
        return "FaceLandmarker bundle"
    return "present"


def _component_of() -> Dict[str, Tuple[str, str]]:
    """relative path -> (component, repo), from the model-layout table."""
    from .common import DOWNLOAD_NAMES
    from ..assets.layout import files_to_fetch

    out: Dict[str, Tuple[str, str]] = {}
    # a component named like a bundle ("hallo") would expand to the bundle: map the others first
    comps = sorted(DOWNLOAD_NAMES["components"], key=lambda c: c in DOWNLOAD_NAMES["bundles"])
    for comp in comps:
        for repo, rel in files_to_fetch(comp):
            out.setdefault(rel, (comp, repo))
    return out


def _own_files(bundle: str) -> List[str]:
    """Files no other bundle needs: present ones show that the user installed this bundle."""
    from ..assets.layout import files_to_fetch

    others = {rel for b in BUNDLES if b != bundle for _, rel in files_to_fetch(b)}
    return [rel for _, rel in files_to_fetch(bundle) if rel not in others]


def check_models(root: Path, report: Report) -> None:
    from .common import OPTIONAL_COMPONENTS
    from ..assets.layout import files_to_fetch

    owner = _component_of()
    report.lines.append(f"models folder {root}")
    if not root.is_dir():
        report.add("PROBLEM", f"{root} does not exist: {download_command(root, 'hallo')}")
        report.ready = {b: False for b in BUNDLES}
        return
    seen: Dict[str, FileCheck] = {}
    for bundle in BUNDLES:
        for repo, rel in files_to_fetch(bundle):
            if rel in seen:
                continue
            comp = owner[rel][0]
            p = root / rel
            fc = FileCheck(rel, comp, repo, "ok", optional=comp in OPTIONAL_COMPONENTS
                           or (rel.endswith(".task") and _legacy_landmarks()))
            if not p.is_file():
                fc.status = "missing"
            else:
                try:
                    fc.detail = f"{_size(p.stat().st_size)}, {check_file(p, rel)}"
                except Exception as e:  # any reader error means the file cannot be used
                    fc.status, fc.detail = "corrupt", f"{_size(p.stat().st_size)}: {e}"
            seen[rel] = fc
            report.files.append(fc)
    # a bundle is wanted when one of its own files is there; with none, the README's first job
    wanted = [b for b in BUNDLES if any(seen[r].status != "missing" for r in _own_files(b))] or ["hallo"]
    needed = {}
    for bundle in BUNDLES:
        files = [seen[rel] for _, rel in files_to_fetch(bundle)]
        bad = [f for f in files if f.status != "ok" and not f.optional]
        report.ready[bundle] = not bad
        if not bad:
            verdict = "ready"
        elif bundle in wanted:
            verdict = f"not ready: {len(bad)} of {len(files)} files missing or corrupt"
            needed.update({f.path: f for f in bad})
        else:
            verdict = f"not installed ({download_command(root, bundle)})"
        report.lines.append(f"  {bundle} ({BUNDLE_USE[bundle]}): {verdict}")
    for fc in report.files:
        if fc.status == "ok":
            report.add("ok", f"{fc.path} ({fc.detail})")
        elif fc.status == "corrupt":
            report.add("CORRUPT", f"{fc.path} ({fc.detail}) -> delete it, then {fc.fix(root)}")
        elif fc.path in needed:
            report.add("MISSING", f"{fc.path} -> {fc.fix(root)}")
        elif fc.optional:
            report.add("note", f"{fc.path} absent (optional) -> {fc.fix(root)}")
    if not (report.ready.get("hallo") or report.ready.get("hallo2")):
        report.add("PROBLEM", "neither hallo nor hallo2 is complete: generate cannot run")


def _legacy_landmarks() -> bool:
    """The installed mediapipe still bundles FaceMesh, so the .task file is not needed."""
    try:
        import mediapipe as mp
    except ImportError:
        return False
    from ..face.landmarks import _legacy_facemesh_module

    return _legacy_facemesh_module(mp) is not None


def _opencv_dists() -> List[str]:
    from importlib.metadata import distributions

    return sorted({(d.metadata["Name"] or "").lower() for d in distributions()
                   if (d.metadata["Name"] or "").lower().startswith("opencv")})


def check_environment(report: Report, models: Optional[Path]) -> None:
    report.lines.append("environment")
    report.add("ok", f"python {sys.version.split()[0]}")
    try:
        import torch
    except ImportError:
        report.add("PROBLEM", "torch is not installed: pip install torch --index-url "
                   "https://download.pytorch.org/whl/cpu (the CPU build; for an NVIDIA GPU the CUDA build "
                   "for your driver, e.g. --index-url https://download.pytorch.org/whl/cu128)")
        return
    if torch.cuda.is_available():
        free, total = torch.cuda.mem_get_info()
        report.add("ok", f"torch {torch.__version__}, cuda: {torch.cuda.get_device_name(0)}, "
                   f"free VRAM {_size(free)} of {_size(total)}")
    else:
        report.add("ok", f"torch {torch.__version__}, device cpu (no CUDA: generation is slow)")
    try:
        import onnxruntime as ort

        report.add("ok", f"onnxruntime {ort.__version__}, providers {', '.join(ort.get_available_providers())}")
    except ImportError:
        report.add("PROBLEM", "onnxruntime is not installed: pip install onnxruntime")
    cv = _opencv_dists()
    if len(cv) == 1:
        report.add("ok", f"one OpenCV: {cv[0]}")
    elif not cv:
        report.add("PROBLEM", "OpenCV is not installed: pip install opencv-contrib-python")
    else:
        others = " ".join(d for d in cv if d != "opencv-contrib-python")
        report.add("PROBLEM", f"{len(cv)} OpenCV distributions share the cv2 folder ({', '.join(cv)}): "
                   f"pip uninstall -y {others} && pip install --force-reinstall --no-deps opencv-contrib-python")
    _check_landmarks(report, models)


def _check_landmarks(report: Report, models: Optional[Path]) -> None:
    try:
        import mediapipe as mp
    except ImportError:
        report.add("PROBLEM", "mediapipe is not installed: pip install mediapipe")
        return
    from ..face.landmarks import TASK_FILENAME, _legacy_facemesh_module

    version = getattr(mp, "__version__", "?")
    task = models / rel_path("face_analysis") / TASK_FILENAME if models else None
    if task is not None and task.is_file():
        report.add("ok", f"mediapipe {version}: face landmarks by the Tasks API ({TASK_FILENAME})")
    elif _legacy_facemesh_module(mp) is not None:
        report.add("ok", f"mediapipe {version}: face landmarks by its bundled legacy FaceMesh "
                   f"({TASK_FILENAME} absent; a different network than upstream's)")
    elif models is None:
        # the file belongs to the models folder, which is not checked here: a fresh install is
        # not broken by its absence, but generate cannot find landmarks until it is there
        report.add("note", f"mediapipe {version} bundles no FaceMesh: generate needs {TASK_FILENAME} from the "
                   f"models folder ({rel_path('face_analysis')}/, fetched by download with face_analysis); "
                   f"add --models to check a folder")
    else:
        # the models section reports the file itself, with its download command
        report.add("note", f"mediapipe {version} bundles no FaceMesh: face landmarks need "
                   f"{rel_path('face_analysis')}/{TASK_FILENAME} (see the models folder below)")


def run_selftest_step(report: Report, out: Optional[str]) -> None:
    from .selftest import run_selftest

    report.lines.append("self-test (tiny random weights, no download)")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(out) if out else Path(tmp) / "selftest.mp4"
        try:
            r = run_selftest(path)
        except Exception as e:  # the point of the self-test is to name what breaks
            report.add("PROBLEM", f"the pipeline failed: {type(e).__name__}: {e}")
            return
        report.add("ok", f"wrote {r['frames']} frames in {r['seconds']:.1f} s"
                   + (f" to {path}" if out else ""))


def diagnose(models: Optional[str] = None, selftest: bool = True, selftest_out: Optional[str] = None) -> Report:
    report = Report()
    root = Path(models).expanduser() if models else None
    check_environment(report, root)
    if root is not None:
        check_models(root, report)
    if selftest:
        run_selftest_step(report, selftest_out)
    return report


def run_doctor(models: Optional[str] = None, selftest: bool = True, selftest_out: Optional[str] = None,
               write: Callable[[str], None] = print) -> int:
    """Print the report; 0 when nothing needs fixing, 1 otherwise."""
    report = diagnose(models, selftest, selftest_out)
    for line in report.lines:
        write(line)
    if report.problems:
        write(f"{len(report.problems)} problem(s) to fix (see above)")
        return 1
    write("everything checked is in order")
    return 0
