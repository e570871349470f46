"""A learned step router's model: a small logistic model in a JSON file, and how it is trained.

The model estimates, for a step's state, the probability that the device model's action would
not do where the cloud model's would (Hera's imitation label: the two models disagree on the
step, or, on recorded outcomes, the cloud model was right and the device model was not). A
step goes to the cloud when that probability clears a threshold; the threshold is picked on the
training rows so that a target share of steps goes to the cloud, and the file keeps the
training scores' quantiles so any other share can be asked for without training again.

Its inputs are the step's structural features (see ``_step_features``) and, optionally, the
step's text as either

- ``embedding:<model>``: a sentence embedding from the model the orchestrator ships (the most
  accurate; needs sentence-transformers where the router runs), or
- ``hashed``: hashed word n-grams (numpy only: for a router on a device without torch).

A ``draft`` model reads a device model's draft answer instead (the cascade's confidence).

Loading and scoring need numpy alone; training also needs scipy (the ``orchestrator`` extra).
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from fleetmind._extras import require
from fleetmind.agents._step_features import DRAFT_FEATURES, HASHED_DIMENSIONS, STRUCTURAL_FEATURES
from fleetmind.errors import StepRouterFileError as StepRouterFileError

FORMAT = "fleetmind-step-router"
VERSION = 1
ModelKind = Literal["step", "draft"]
TextEncoder = Callable[[Sequence[str]], np.ndarray]
"""Texts -> one row of features per text (an embedder's ``embed``, or hashed n-grams)."""


@dataclass
class StepRouterModel:
    """Weights of a learned step router, as saved in its file.

    Attributes:
        kind: ``step`` (reads the state before a step) or ``draft`` (reads a device draft).
        text: ``none``, ``hashed`` or ``embedding:<model name>``.
        features: Names of the numeric features, in weight order.
        mean, scale: Standardisation of the numeric features.
        weights: One weight per numeric feature.
        text_weights: One weight per text dimension (empty when ``text`` is ``none``).
        bias: The intercept.
        quantiles: The training scores at 0%, 1%, ..., 100% (maps a cloud share to a
            threshold).
        cloud_share: The share of steps the saved threshold sends to the cloud.
        threshold: Scores at or above it go to the cloud.
        trained_on: Where the training rows came from and how many there were.
    """

    kind: ModelKind
    text: str
    features: tuple[str, ...]
    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    text_weights: np.ndarray
    bias: float
    quantiles: np.ndarray
    cloud_share: float
    threshold: float
    trained_on: dict[str, Any] = field(default_factory=dict)

    # Scoring -------------------------------------------------------------------------------

    def scores(self, numeric: np.ndarray, text: np.ndarray | None = None) -> np.ndarray:
        """P(needs the cloud) for rows of numeric features (and their text features)."""
        z = (np.asarray(numeric, dtype=np.float64) - self.mean) / self.scale
        logits = z @ self.weights + self.bias
        if self.text_weights.size:
            if text is None:
                raise ValueError(f"this router reads the step's text ({self.text})")
            logits = logits + np.asarray(text, dtype=np.float64) @ self.text_weights
        probabilities: np.ndarray = 1.0 / (1.0 + np.exp(-np.clip(logits, -40, 40)))
        return probabilities

    def threshold_for(self, cloud_share: float) -> float:
        """The threshold that sent ``cloud_share`` of the training steps to the cloud."""
        if not 0.0 <= cloud_share <= 1.0:
            raise ValueError(f"a cloud share is between 0 and 1, not {cloud_share:g}")
        if cloud_share == 0.0:
            return math.inf
        return float(
            np.interp(1.0 - cloud_share, np.linspace(0, 1, len(self.quantiles)), self.quantiles)
        )

    @property
    def needs_embedder(self) -> str | None:
        """The embedding model this router's text features come from, or None."""
        return self.text.split(":", 1)[1] if self.text.startswith("embedding:") else None

    # The file ------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "kind": self.kind,
            "text": self.text,
            "features": list(self.features),
            "mean": self.mean.tolist(),
            "scale": self.scale.tolist(),
            "weights": self.weights.tolist(),
            "text_weights": _pack(self.text_weights),
            "bias": self.bias,
            "quantiles": self.quantiles.tolist(),
            "cloud_share": self.cloud_share,
            "threshold": self.threshold,
            "trained_on": self.trained_on,
        }

    def save(self, path: str | Path) -> Path:
        """Write the model as JSON (atomically)."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".partial")
        partial.write_text(json.dumps(self.to_dict(), indent=1))
        partial.replace(target)
        return target

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "the router") -> StepRouterModel:
        if not isinstance(data, Mapping) or data.get("format") != FORMAT:
            raise StepRouterFileError(f"{source} is not a fleetmind step router file")
        if data.get("version") != VERSION:
            raise StepRouterFileError(
                f"{source} is a version {data.get('version')} step router; this fleetmind reads "
                f"version {VERSION}"
            )
        try:
            kind = data["kind"]
            features = tuple(data["features"])
            if kind not in ("step", "draft"):
                raise ValueError(f"unknown kind {kind!r}")
            known = STRUCTURAL_FEATURES if kind == "step" else DRAFT_FEATURES
            unknown = [f for f in features if f not in known]
            if unknown:
                raise ValueError(f"unknown feature(s) {', '.join(unknown)}")
            model = cls(
                kind=kind,
                text=str(data["text"]),
                features=features,
                mean=np.asarray(data["mean"], dtype=np.float64),
                scale=np.asarray(data["scale"], dtype=np.float64),
                weights=np.asarray(data["weights"], dtype=np.float64),
                text_weights=_unpack(data.get("text_weights") or ""),
                bias=float(data["bias"]),
                quantiles=np.asarray(data["quantiles"], dtype=np.float64),
                cloud_share=float(data["cloud_share"]),
                threshold=float(data["threshold"]),
                trained_on=dict(data.get("trained_on") or {}),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise StepRouterFileError(f"{source} is damaged: {exc}") from None
        sizes = {len(model.features), model.mean.size, model.scale.size, model.weights.size}
        if len(sizes) != 1 or model.quantiles.size < 2:
            raise StepRouterFileError(f"{source} is damaged: its weights do not fit its features")
        if model.text == "hashed" and model.text_weights.size != HASHED_DIMENSIONS:
            raise StepRouterFileError(f"{source} is damaged: hashed text weights of wrong size")
        return model

    @classmethod
    def load(cls, path: str | Path) -> StepRouterModel:
        """Read a router file (numpy only: no torch, no scipy)."""
        target = Path(path)
        try:
            data = json.loads(target.read_text())
        except FileNotFoundError:
            raise StepRouterFileError(f"no step router file at {target}") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise StepRouterFileError(f"cannot read the step router {target}: {exc}") from None
        return cls.from_dict(data, source=str(target))


def _pack(values: np.ndarray) -> str:
    return (
        base64.b64encode(np.asarray(values, dtype="<f4").tobytes()).decode() if values.size else ""
    )


def _unpack(text: str) -> np.ndarray:
    if not text:
        return np.zeros(0)
    return np.frombuffer(base64.b64decode(text), dtype="<f4").astype(np.float64)


# Training ----------------------------------------------------------------------------------


def fit_step_router(
    numeric: np.ndarray,
    labels: Sequence[bool] | np.ndarray,
    *,
    kind: ModelKind = "step",
    features: Sequence[str] | None = None,
    text: np.ndarray | None = None,
    text_kind: str = "none",
    cloud_share: float = 0.4,
    l2: float = 1.0,
    weights: Sequence[float] | np.ndarray | None = None,
    trained_on: Mapping[str, Any] | None = None,
) -> StepRouterModel:
    """Fit the logistic model on labeled rows (label True: the step needed the cloud).

    Args:
        numeric: Rows of numeric features, one column per name in ``features``.
        labels: Whether each row needed the cloud model.
        text: Text features per row (embeddings or hashed n-grams), or None.
        text_kind: ``hashed`` or ``embedding:<model>`` when ``text`` is given.
        cloud_share: The share of training steps the saved threshold sends to the cloud.
        l2: Strength of the L2 penalty (on all weights but the intercept).
        weights: A weight per row (default: all 1).
    """
    require("scipy.optimize", "orchestrator", "training a step router")
    from scipy.optimize import minimize

    names = tuple(features or (STRUCTURAL_FEATURES if kind == "step" else DRAFT_FEATURES))
    x_num = np.asarray(numeric, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    if x_num.ndim != 2 or x_num.shape[1] != len(names) or x_num.shape[0] != y.size:
        raise ValueError("numeric features, names and labels do not line up")
    if y.size < 10 or y.min() == y.max():
        raise ValueError("training needs at least 10 rows with both labels present")
    mean = x_num.mean(axis=0)
    scale = x_num.std(axis=0)
    scale[scale < 1e-9] = 1.0
    x = (x_num - mean) / scale
    if text is not None:
        x = np.hstack([x, np.asarray(text, dtype=np.float64)])
    row_weights = np.ones(y.size) if weights is None else np.asarray(weights, dtype=np.float64)
    total = row_weights.sum()

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        w, b = theta[:-1], theta[-1]
        logits = x @ w + b
        p = 1.0 / (1.0 + np.exp(-np.clip(logits, -40, 40)))
        nll = np.logaddexp(0.0, logits) - y * logits
        value = float(row_weights @ nll) / total + 0.5 * l2 * float(w @ w) / y.size
        residual = row_weights * (p - y) / total
        grad_w = x.T @ residual + l2 * w / y.size
        return value, np.append(grad_w, residual.sum())

    result = minimize(
        loss, np.zeros(x.shape[1] + 1), jac=True, method="L-BFGS-B", options={"maxiter": 500}
    )
    theta = result.x
    n_num = len(names)
    model = StepRouterModel(
        kind=kind,
        text=text_kind if text is not None else "none",
        features=names,
        mean=mean,
        scale=scale,
        weights=theta[:n_num],
        text_weights=theta[n_num:-1],
        bias=float(theta[-1]),
        quantiles=np.zeros(2),
        cloud_share=cloud_share,
        threshold=0.5,
        trained_on={"rows": int(y.size), "needed_cloud": int(y.sum()), **(trained_on or {})},
    )
    scores = model.scores(x_num, text)
    model.quantiles = np.quantile(scores, np.linspace(0, 1, 101))
    model.threshold = model.threshold_for(cloud_share)
    return model
