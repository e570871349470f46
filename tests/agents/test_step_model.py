"""The learned step router's model file, the features it reads, and recorded model outcomes."""

from __future__ import annotations

import asyncio
import base64
import csv
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fleetmind.agents import (
    DRAFT_FEATURES,
    STRUCTURAL_FEATURES,
    LearnedStepRouter,
    OutcomeFileError,
    StepRouterFileError,
    StepRouterModel,
    draft_features,
    fit_step_router,
    hashed_matrix,
    hashed_ngrams,
    load_outcomes,
    prompt_state,
    routing_curve,
)
from fleetmind.agents._step_features import HASHED_DIMENSIONS

# Training and scoring ------------------------------------------------------------------------

FILLER = ["the", "a", "of", "to", "and", "in", "on", "for", "with", "by", "from", "at"]


def separable(n: int = 200, seed: int = 7) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows whose label shows in one numeric feature and in the words of their text."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2 == 0
    numeric = rng.normal(size=(n, len(STRUCTURAL_FEATURES)))
    numeric[:, STRUCTURAL_FEATURES.index("math_symbols")] += np.where(labels, 1.5, -1.5)
    texts = [
        " ".join([*rng.choice(FILLER, size=6), "integral proof theorem" if y else "hello thanks"])
        for y in labels
    ]
    return numeric, labels, hashed_matrix([hashed_ngrams(t) for t in texts])


@pytest.fixture(scope="module")
def trained() -> tuple[StepRouterModel, np.ndarray, np.ndarray, np.ndarray]:
    numeric, labels, text = separable()
    model = fit_step_router(numeric, labels, text=text, text_kind="hashed", cloud_share=0.3)
    return model, numeric, labels, text


def test_a_fitted_router_separates_the_classes(trained) -> None:
    model, numeric, labels, text = trained
    scores = model.scores(numeric, text)
    assert scores.shape == (len(labels),) and ((scores > 0) & (scores < 1)).all()
    assert scores[labels].min() > scores[~labels].max()
    assert scores[labels].mean() > 0.8 and scores[~labels].mean() < 0.2
    assert model.kind == "step" and model.text == "hashed"
    assert model.text_weights.shape == (HASHED_DIMENSIONS,)
    assert model.trained_on == {"rows": 200, "needed_cloud": 100}
    # New rows of each kind: the more likely class is the right one.
    fresh_numeric, fresh_labels, fresh_text = separable(40, seed=99)
    fresh = model.scores(fresh_numeric, fresh_text)
    assert ((fresh >= 0.5) == fresh_labels).mean() >= 0.9


def test_scoring_a_text_router_without_text_is_refused(trained) -> None:
    model, numeric, _, _ = trained
    with pytest.raises(ValueError, match="reads the step's text"):
        model.scores(numeric)


@pytest.mark.parametrize("share", [0.1, 0.25, 0.5, 0.8])
def test_threshold_for_a_share_sends_that_share_of_the_training_rows(trained, share) -> None:
    model, numeric, _, text = trained
    threshold = model.threshold_for(share)
    sent = (model.scores(numeric, text) >= threshold).mean()
    assert sent == pytest.approx(share, abs=0.02)


def test_threshold_ends_and_the_saved_share(trained) -> None:
    model, numeric, _, text = trained
    assert model.threshold_for(0.0) == float("inf")
    assert model.threshold_for(1.0) <= model.scores(numeric, text).min()
    assert model.threshold == model.threshold_for(0.3) and model.cloud_share == 0.3
    with pytest.raises(ValueError, match="between 0 and 1"):
        model.threshold_for(1.5)


def test_training_needs_both_labels_and_aligned_rows() -> None:
    numeric, labels, _ = separable(20)
    with pytest.raises(ValueError, match="both labels"):
        fit_step_router(numeric, np.zeros(20, dtype=bool))
    with pytest.raises(ValueError, match="do not line up"):
        fit_step_router(numeric[:, :3], labels)


def test_save_and_load_give_the_same_scores(trained, tmp_path: Path) -> None:
    model, numeric, _, text = trained
    path = model.save(tmp_path / "deep" / "router.json")
    assert path.exists() and not path.with_name("router.json.partial").exists()
    loaded = StepRouterModel.load(path)
    # The text weights are stored as 32-bit floats: the same scores to float32 precision.
    np.testing.assert_allclose(loaded.scores(numeric, text), model.scores(numeric, text), atol=1e-6)
    assert loaded.threshold == model.threshold and loaded.features == model.features
    np.testing.assert_array_equal(loaded.quantiles, model.quantiles)
    # A loaded router saves and loads to exactly the same scores.
    again = StepRouterModel.load(loaded.save(tmp_path / "again.json"))
    np.testing.assert_array_equal(again.scores(numeric, text), loaded.scores(numeric, text))
    assert json.loads(path.read_text())["format"] == "fleetmind-step-router"


def damage(data: dict, **changes: object) -> dict:
    return {**data, **changes}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "cannot read the step router"),
        ("[1, 2]", "is not a fleetmind step router file"),
        ('{"format": "something-else", "version": 1}', "is not a fleetmind step router file"),
    ],
    ids=["not-json", "not-an-object", "wrong-format"],
)
def test_unreadable_files(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "router.json"
    path.write_text(content)
    with pytest.raises(StepRouterFileError) as caught:
        StepRouterModel.load(path)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(StepRouterFileError, match=r"no step router file at .*nothing\.json"):
        StepRouterModel.load(tmp_path / "nothing.json")


def test_damaged_files(trained, tmp_path: Path) -> None:
    model, _, _, _ = trained
    good = model.to_dict()
    short = base64.b64encode(np.zeros(10, dtype="<f4").tobytes()).decode()
    cases = {
        "version 2 step router; this fleetmind reads version 1": damage(good, version=2),
        "weights do not fit its features": damage(good, weights=good["weights"][:-1]),
        "hashed text weights of wrong size": damage(good, text_weights=short),
        "unknown kind 'router'": damage(good, kind="router"),
        "unknown feature(s) colour": damage(good, features=[*good["features"][:-1], "colour"]),
        "is damaged": damage(good, mean=["x"] * len(good["mean"])),
    }
    missing = dict(good)
    del missing["bias"]
    cases["is damaged: 'bias'"] = missing
    cases["is damaged: Incorrect padding"] = damage(good, text_weights="abc")
    for message, data in cases.items():
        path = tmp_path / "router.json"
        path.write_text(json.dumps(data))
        with pytest.raises(StepRouterFileError) as caught:
            StepRouterModel.load(path)
        text = str(caught.value)
        assert message in text and str(path) in text and "\n" not in text, (message, text)


NO_TORCH = """
import asyncio, sys
sys.modules["torch"] = None
sys.modules["scipy"] = None
from fleetmind.agents import LearnedStepRouter, StepRouterModel, prompt_state
try:
    from scipy.optimize import minimize
except ImportError:
    blocked = True
else:
    blocked = False
router = LearnedStepRouter(StepRouterModel.load(sys.argv[1]))
score = asyncio.run(router.score(prompt_state(sys.argv[2])))
loaded = sorted(m for m in ("torch", "scipy", "sentence_transformers") if sys.modules.get(m))
print(repr(score), blocked, loaded)
"""


def test_a_hashed_router_loads_and_scores_without_torch_or_scipy(trained, tmp_path: Path) -> None:
    model, _, _, _ = trained
    path = model.save(tmp_path / "router.json")
    prompt = "prove the integral theorem"
    proc = subprocess.run(
        [sys.executable, "-c", NO_TORCH, str(path), prompt],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    score, blocked, loaded = proc.stdout.split(maxsplit=2)
    assert blocked == "True" and loaded.strip() == "[]"
    here = asyncio.run(LearnedStepRouter(StepRouterModel.load(path)).score(prompt_state(prompt)))
    assert float(score) == pytest.approx(here, abs=1e-12)


# Draft features ------------------------------------------------------------------------------

QUESTION = "Tom has 9 boxes with 2 apples in each and gives 3 away. How many are left?"


def test_draft_features_cover_every_named_feature() -> None:
    signs = draft_features("9 * 2 = 18, 18 - 3 = 15 #### 15", QUESTION)
    assert tuple(signs) == DRAFT_FEATURES
    assert signs["arithmetic_errors"] == 0 and signs["arithmetic_checked"] == pytest.approx(0.2)
    assert signs["no_final_answer"] == 0 and signs["final_not_integer"] == 0
    assert signs["final_not_last_result"] == 0 and signs["question_numbers_unused"] == 0
    assert signs["truncated"] == 0 and signs["empty"] == 0


@pytest.mark.parametrize(
    "draft",
    [
        "9 * 2 = 20 apples, 20 - 3 = 17 #### 17",
        "9 x 2 = 20 apples, 20 - 3 = 17 #### 17",
        "9 \u00d7 2 = 20 apples, then 17 are left #### 17",
        "He computes <<9*2=20>> apples and then 17 are left #### 17",
        "He computes <<(9+1)*2=18>> apples #### 15",
    ],
    ids=["star", "x", "times-sign", "gsm8k", "brackets"],
)
def test_wrong_arithmetic_is_caught(draft: str) -> None:
    signs = draft_features(draft, QUESTION)
    assert signs["arithmetic_errors"] >= 1
    assert signs["arithmetic_checked"] > 0


def test_correct_gsm8k_calculations_pass() -> None:
    signs = draft_features("He has <<9*2=18>> apples and <<18-3=15>> left #### 15", QUESTION)
    assert signs["arithmetic_errors"] == 0 and signs["no_final_answer"] == 0


def test_one_gsm8k_calculation_is_checked_once() -> None:
    """A ``<<a*b=c>>`` calculation is not also read as an inline ``a*b=c`` one."""
    signs = draft_features("He computes <<9*2=20>> apples #### 20", QUESTION)
    assert (signs["arithmetic_errors"], signs["arithmetic_checked"]) == (1.0, 0.1)


def test_a_subtraction_without_spaces_uses_its_numbers() -> None:
    """``18-3`` is a subtraction of 3, not 18 and -3 (the question's 3 is used)."""
    signs = draft_features("9*2=18 apples, 18-3=15 left #### 15", QUESTION)
    assert signs["question_numbers_unused"] == 0


def test_missing_non_integer_and_unused_answers() -> None:
    none = draft_features("He has some apples, I think.", QUESTION)
    assert none["no_final_answer"] == 1 and none["hedges"] >= 1
    assert none["question_numbers_unused"] == 1
    fractional = draft_features("9 * 2 = 18, 18 / 4 = 4.5 #### 4.5", QUESTION)
    assert fractional["final_not_integer"] == 1 and fractional["no_final_answer"] == 0
    partly = draft_features("9 * 2 = 18 #### 18", QUESTION)
    assert partly["question_numbers_unused"] == pytest.approx(1 / 3)
    not_last = draft_features("9 * 2 = 18, 18 - 3 = 15 #### 18", QUESTION)
    assert not_last["final_not_last_result"] == 1
    assert draft_features("The answer is 15", QUESTION)["no_final_answer"] == 0


def test_cut_off_empty_and_bad_tool_calls() -> None:
    assert draft_features("9 * 2 =", QUESTION, finish_reason="length")["truncated"] == 1
    assert draft_features("  ", QUESTION)["empty"] == 1
    assert draft_features("", QUESTION, tool_call_errors=9)["invalid_tool_call"] == 5


def test_hashed_ngrams_are_deterministic_bounded_and_keep_no_words() -> None:
    text = "Prove the theorem; prove it again, Prove THE theorem!"
    buckets = hashed_ngrams(text)
    assert buckets == hashed_ngrams(text) == hashed_ngrams(text.upper())
    assert buckets == sorted(set(buckets))
    assert all(0 <= b < HASHED_DIMENSIONS for b in buckets)
    words = ["prove", "the", "theorem", "it", "again"]
    pairs = ["prove the", "the theorem", "theorem prove", "prove it", "it again", "again prove"]

    def bucket(gram: str) -> int:
        digest = hashlib.blake2b(gram.encode(), digest_size=4).digest()
        return int.from_bytes(digest, "little") % HASHED_DIMENSIONS

    assert buckets == sorted({bucket(g) for g in [*words, *pairs]})
    assert hashed_ngrams("") == []
    matrix = hashed_matrix([buckets, []])
    assert matrix.shape == (2, HASHED_DIMENSIONS)
    assert np.linalg.norm(matrix[0]) == pytest.approx(1.0) and not matrix[1].any()


# Outcome files --------------------------------------------------------------------------------


def write_csv(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


# small is right on 2 of 4, big on 3 of 4.
ROWS = [
    ["What is 2+2?", "True", "True"],
    ["Prove Fermat", "False", "True"],
    ["Name a colour", "True", "False"],
    ["Integrate x^2", "False", "True"],
]


def test_outcomes_pick_the_less_accurate_model_as_the_device(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "mmlu_algebra.csv",
        ["prompt", "big", "small"],
        [[r[0], r[2], r[1]] for r in ROWS],
    )
    outcomes = load_outcomes(path)
    assert (outcomes.device_model, outcomes.cloud_model) == ("small", "big")
    assert outcomes.device_ok.tolist() == [True, False, True, False]
    assert outcomes.cloud_ok.tolist() == [True, True, False, True]
    assert outcomes.prompts == [r[0] for r in ROWS] and outcomes.groups == ["algebra"] * 4
    assert outcomes.device_responses is None and len(outcomes) == 4
    named = load_outcomes(path, device_model="big", cloud_model="small")
    assert (named.device_model, named.cloud_model) == ("big", "small")
    assert load_outcomes(path, cloud_model="small").device_model == "big"


def test_outcomes_with_the_device_model_s_responses(tmp_path: Path) -> None:
    rows = [[*r, f"draft {i}"] for i, r in enumerate(ROWS)]
    path = write_csv(
        tmp_path / "math_responses.csv", ["prompt", "small", "big", "small_response"], rows
    )
    outcomes = load_outcomes(path)
    assert (outcomes.device_model, outcomes.cloud_model) == ("small", "big")
    assert outcomes.device_responses == ["draft 0", "draft 1", "draft 2", "draft 3"]
    assert outcomes.groups == ["math"] * 4
    # Responses of the more accurate model: which one is the device cannot be guessed.
    swapped = [[r[0], r[2], r[1], r[3]] for r in rows]
    wrong = write_csv(
        tmp_path / "other" / "x.csv", ["prompt", "small", "big", "small_response"], swapped
    )
    with pytest.raises(OutcomeFileError, match="name the device and the cloud model's columns"):
        load_outcomes(wrong)


def test_contaminated_prompts_are_left_out(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    write_csv(folder / "mmlu_a.csv", ["prompt", "small", "big"], ROWS[:2])
    write_csv(folder / "mmlu_b.csv", ["prompt", "small", "big"], ROWS[2:])
    (folder / "contaminated_prompts.jsonl").write_text(
        json.dumps({"eval_prompt": "Prove Fermat"}) + "\nnot json\n\n"
    )
    outcomes = load_outcomes(folder)
    assert outcomes.left_out == 1 and "Prove Fermat" not in outcomes.prompts
    assert outcomes.groups == ["a", "b", "b"] and len(outcomes.sources) == 2
    # Listed one folder up also counts.
    nested = tmp_path / "up" / "inner"
    write_csv(nested / "c.csv", ["prompt", "small", "big"], ROWS)
    (tmp_path / "up" / "contaminated_prompts.jsonl").write_text(
        json.dumps({"eval_prompt": "Name a colour"}) + "\n"
    )
    assert load_outcomes(nested).left_out == 1


def test_unusable_outcome_files(tmp_path: Path) -> None:
    no_prompt = write_csv(
        tmp_path / "a.csv", ["question", "small", "big"], [["q", "True", "False"]]
    )
    with pytest.raises(OutcomeFileError, match="has no 'prompt' column"):
        load_outcomes(no_prompt)
    maybe = write_csv(tmp_path / "b.csv", ["prompt", "small", "big"], [["q", "maybe", "True"]])
    with pytest.raises(OutcomeFileError, match="'maybe' is not True or False"):
        load_outcomes(maybe, device_model="small", cloud_model="big")
    with pytest.raises(OutcomeFileError, match="1 True/False model columns"):
        load_outcomes(maybe)
    with pytest.raises(OutcomeFileError, match="no column 'huge'"):
        load_outcomes(maybe, device_model="huge")
    with pytest.raises(OutcomeFileError, match="no outcome file or folder"):
        load_outcomes(tmp_path / "missing")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(OutcomeFileError, match=r"no \.csv files"):
        load_outcomes(empty)


# The routing curve ---------------------------------------------------------------------------

# device right on 0 and 3, cloud on 0, 1 and 2: device 0.5, cloud 0.75.
DEVICE_OK = np.array([True, False, False, True])
CLOUD_OK = np.array([True, True, True, False])


def test_the_oracle_curve_by_hand() -> None:
    curve = routing_curve(CLOUD_OK.astype(float) - DEVICE_OK, DEVICE_OK, CLOUD_OK)
    assert curve.cloud_share.tolist() == [0, 0.25, 0.5, 0.75, 1]
    assert curve.accuracy.tolist() == [0.5, 0.75, 1.0, 1.0, 0.75]
    assert (curve.device_accuracy, curve.cloud_accuracy) == (0.5, 0.75)
    # Area 0.84375 over the device's 0.5, out of a gap of 0.25.
    assert curve.apgr == pytest.approx(1.375, abs=1e-12)
    assert curve.cpt(0.5) == 0.25 and curve.cpt(1.0) == 0.25
    assert curve.accuracy_at(0.125) == pytest.approx(0.625)


def test_a_random_router_recovers_half_the_gap() -> None:
    curve = routing_curve(np.zeros(4), DEVICE_OK, CLOUD_OK)
    np.testing.assert_allclose(curve.accuracy, [0.5, 0.5625, 0.625, 0.6875, 0.75])
    assert curve.apgr == pytest.approx(0.5, abs=1e-12)
    assert curve.cpt(0.5) == 0.5 and curve.cpt(0.8) == 1.0


def test_ties_are_averaged_and_a_bad_router_is_below_random() -> None:
    # Two tied at the top: one gains, one loses; the rest below.
    tied = routing_curve(np.array([1.0, 1.0, 0.0, 0.0]), DEVICE_OK, CLOUD_OK)
    np.testing.assert_allclose(tied.accuracy, [0.5, 0.625, 0.75, 0.75, 0.75])
    worst = routing_curve(-(CLOUD_OK.astype(float) - DEVICE_OK), DEVICE_OK, CLOUD_OK)
    assert worst.apgr < 0.5 < routing_curve(CLOUD_OK - 0.0, DEVICE_OK, CLOUD_OK).apgr
    no_gap = routing_curve(np.zeros(2), np.array([True, True]), np.array([True, False]))
    assert np.isnan(no_gap.apgr)
    with pytest.raises(ValueError, match="no prompts"):
        routing_curve(np.zeros(0), np.zeros(0, dtype=bool), np.zeros(0, dtype=bool))
