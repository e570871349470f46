"""Recorded model outcomes, and how well a step router would have done on them.

A file of outcomes holds prompts with a correctness column per model (the layout of RouteLLM's
evaluation data: ``prompt``, then ``<model>`` columns of True/False, optionally
``<model>_response`` columns with the answers). A router scores each prompt; sweeping its
threshold from all-device to all-cloud gives accuracy against the share of cloud calls, the
curve RouteLLM's metrics are read from:

- APGR: the area under the router's curve above the device model's accuracy, over the area
  under the cloud model's (0.5 for a random router; above 1 is possible when the device model
  is right where the cloud model is not);
- CPT(x%): the smallest share of cloud calls that reaches the device's accuracy plus x% of the
  gap to the cloud's.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fleetmind.errors import OutcomeFileError as OutcomeFileError


@dataclass
class OutcomeSet:
    """Prompts with whether the device and the cloud model answered each correctly.

    Attributes:
        prompts: The prompts.
        device_ok, cloud_ok: Per prompt, whether that model was right.
        groups: Per prompt, where it came from (the file's name: a domain or a benchmark).
        device_responses: The device model's answers, when the file has them (a cascade
            reads them as drafts).
        device_model, cloud_model: The columns used.
        left_out: Prompts left out because they are listed as contaminated.
    """

    prompts: list[str]
    device_ok: np.ndarray
    cloud_ok: np.ndarray
    groups: list[str]
    device_responses: list[str] | None = None
    device_model: str = ""
    cloud_model: str = ""
    left_out: int = 0
    sources: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.prompts)

    def subset(self, mask: np.ndarray) -> OutcomeSet:
        """The prompts where ``mask`` is true."""
        index = np.flatnonzero(mask)
        return OutcomeSet(
            prompts=[self.prompts[i] for i in index],
            device_ok=self.device_ok[index],
            cloud_ok=self.cloud_ok[index],
            groups=[self.groups[i] for i in index],
            device_responses=None
            if self.device_responses is None
            else [self.device_responses[i] for i in index],
            device_model=self.device_model,
            cloud_model=self.cloud_model,
            sources=self.sources,
        )


def load_outcomes(
    path: str | Path,
    *,
    device_model: str | None = None,
    cloud_model: str | None = None,
) -> OutcomeSet:
    """Read a CSV of outcomes, or every CSV under a folder (each file's rows form one group).

    The two models are the columns named, or else the file's two True/False columns with the
    less accurate one as the device. Prompts listed in a ``contaminated_prompts.jsonl`` beside a
    file (or one folder up) under ``eval_prompt`` are left out.
    """
    root = Path(path)
    if not root.exists():
        raise OutcomeFileError(f"no outcome file or folder at {root}")
    files = sorted(root.rglob("*.csv")) if root.is_dir() else [root]
    if not files:
        raise OutcomeFileError(f"no .csv files under {root}")
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    prompts: list[str] = []
    groups: list[str] = []
    rows_device: list[bool] = []
    rows_cloud: list[bool] = []
    responses: list[str] | None = []
    left_out = 0
    chosen: tuple[str, str] | None = None
    for file in files:
        contaminated = _contaminated(file)
        try:
            with file.open(newline="", encoding="utf-8") as handle:
                reader = csv.DictReader(handle)
                rows = list(reader)
                columns = reader.fieldnames or []
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise OutcomeFileError(f"cannot read {file}: {exc}") from None
        if "prompt" not in columns:
            raise OutcomeFileError(f"{file} has no 'prompt' column (it has: {', '.join(columns)})")
        if chosen is None:
            chosen = _models(file, rows, columns, device_model, cloud_model)
        missing = [c for c in chosen if c not in columns]
        if missing:
            raise OutcomeFileError(f"{file} has no column {missing[0]!r} (the other files do)")
        device_column, cloud_column = chosen
        with_responses = f"{device_column}_response" in columns
        if not with_responses:
            responses = None
        group = file.stem.removeprefix("mmlu_").removesuffix("_responses")
        for row in rows:
            if row["prompt"] in contaminated:
                left_out += 1
                continue
            prompts.append(row["prompt"])
            groups.append(group)
            rows_device.append(_truth(row[device_column], file))
            rows_cloud.append(_truth(row[cloud_column], file))
            if responses is not None:
                responses.append(row.get(f"{device_column}_response") or "")
    assert chosen is not None
    device_ok = np.array(rows_device, dtype=bool)
    cloud_ok = np.array(rows_cloud, dtype=bool)
    if device_model is None and cloud_model is None and device_ok.mean() > cloud_ok.mean():
        # Told nothing: the less accurate model over all the files is the device's.
        if responses is not None:
            raise OutcomeFileError(
                f"{root}: the responses are {chosen[0]!r}'s, but {chosen[1]!r} is less accurate;"
                " name the device and the cloud model's columns"
            )
        chosen = (chosen[1], chosen[0])
        device_ok, cloud_ok = cloud_ok, device_ok
    return OutcomeSet(
        prompts=prompts,
        device_ok=device_ok,
        cloud_ok=cloud_ok,
        groups=groups,
        device_responses=responses,
        device_model=chosen[0],
        cloud_model=chosen[1],
        left_out=left_out,
        sources=[str(f) for f in files],
    )


def _contaminated(file: Path) -> set[str]:
    for folder in (file.parent, file.parent.parent):
        listing = folder / "contaminated_prompts.jsonl"
        if listing.exists():
            out = set()
            for line in listing.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    try:
                        out.add(json.loads(line)["eval_prompt"])
                    except (json.JSONDecodeError, KeyError, TypeError):
                        continue
            return out
    return set()


def _truth(value: str, file: Path) -> bool:
    text = (value or "").strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no", ""):
        return False
    raise OutcomeFileError(f"{file}: {value!r} is not True or False")


def _models(
    file: Path,
    rows: list[dict[str, str]],
    columns: Sequence[str],
    device: str | None,
    cloud: str | None,
) -> tuple[str, str]:
    for name in (device, cloud):
        if name is not None and name not in columns:
            raise OutcomeFileError(f"{file} has no column {name!r}")
    truthy = {"true", "false", "1", "0"}
    boolean = [
        c
        for c in columns
        if c != "prompt"
        and not c.endswith("_response")
        and rows
        and all((r.get(c) or "").strip().lower() in truthy for r in rows[:50])
    ]
    if device is not None and cloud is not None:
        return device, cloud
    candidates = [c for c in boolean if c not in (device, cloud)]
    if device is None and cloud is None:
        if len(boolean) != 2:
            raise OutcomeFileError(
                f"{file} has {len(boolean)} True/False model columns; name the device and the "
                "cloud model's columns"
            )
        first, second = boolean
        if f"{second}_response" in columns and f"{first}_response" not in columns:
            return second, first  # the responses are the device's drafts
        return first, second
    if len(candidates) != 1:
        raise OutcomeFileError(f"{file}: cannot tell which other column is the second model")
    return (device, candidates[0]) if device is not None else (candidates[0], cloud)  # type: ignore[return-value]


# The curve and its figures -----------------------------------------------------------------


@dataclass(frozen=True)
class RoutingCurve:
    """Accuracy at every share of cloud calls, for one router's scores on one outcome set."""

    cloud_share: np.ndarray
    accuracy: np.ndarray
    device_accuracy: float
    cloud_accuracy: float

    @property
    def apgr(self) -> float:
        """Average performance gap recovered (RouteLLM's definition)."""
        gap = self.cloud_accuracy - self.device_accuracy
        if gap <= 0:
            return float("nan")
        area = float(np.trapezoid(self.accuracy, self.cloud_share))
        return (area - self.device_accuracy) / gap

    def cpt(self, recovered: float) -> float:
        """The smallest cloud share reaching ``recovered`` (0..1) of the gap (CPT)."""
        target = self.device_accuracy + recovered * (self.cloud_accuracy - self.device_accuracy)
        reached = np.flatnonzero(self.accuracy >= target - 1e-12)
        return float(self.cloud_share[reached[0]]) if reached.size else float("nan")

    def accuracy_at(self, cloud_share: float) -> float:
        """Accuracy with ``cloud_share`` of the calls on the cloud."""
        return float(np.interp(cloud_share, self.cloud_share, self.accuracy))


def routing_curve(scores: np.ndarray, device_ok: np.ndarray, cloud_ok: np.ndarray) -> RoutingCurve:
    """The curve of a router whose higher scores go to the cloud first (ties: averaged)."""
    device = np.asarray(device_ok, dtype=np.float64)
    cloud = np.asarray(cloud_ok, dtype=np.float64)
    n = device.size
    if n == 0:
        raise ValueError("no prompts to score")
    values = np.asarray(scores, dtype=np.float64)
    order = np.argsort(-values, kind="stable")
    gains = cloud[order] - device[order]
    # Tied scores are sent together: expected accuracy as if ties were broken at random.
    _, starts, sizes = np.unique(-values[order], return_index=True, return_counts=True)
    block_means = np.add.reduceat(gains, starts) / sizes
    gains = np.repeat(block_means, sizes)
    correct = device.sum() + np.concatenate([[0.0], np.cumsum(gains)])
    return RoutingCurve(
        cloud_share=np.arange(n + 1) / n,
        accuracy=correct / n,
        device_accuracy=float(device.mean()),
        cloud_accuracy=float(cloud.mean()),
    )
