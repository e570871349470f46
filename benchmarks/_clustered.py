"""Synthetic vectors shaped like sentence embeddings, shared by routing_scale.py and memory.py.

Uniformly random high-dimensional vectors have no neighbourhoods, so the data is clustered and
low-rank (routing_scale.py's docstring gives the reasons and the measured similarities): a random
``SUBSPACE``-dimensional subspace, ``round(2 * sqrt(n))`` centres in it with log-normal popularity,
Gaussian spread around them, small isotropic noise in every dimension, then L2-normalised.
"""

from __future__ import annotations

import math

import numpy as np

SUBSPACE = 48
WITHIN_CLUSTER_SIGMA = 0.8
ISOTROPIC_SIGMA = 0.05


class ClusteredSpace:
    """The subspace and the centres for ``n`` points, from the seeded stream ``[seed, n]``."""

    def __init__(self, n: int, seed: int, dimension: int) -> None:
        rng = np.random.default_rng([seed, n])
        basis, _ = np.linalg.qr(rng.standard_normal((dimension, SUBSPACE)))
        self.basis = basis.T.astype(np.float32)  # (SUBSPACE, dimension), orthonormal rows
        self.clusters = max(8, round(2 * math.sqrt(n)))
        self.centres = rng.standard_normal((self.clusters, SUBSPACE)).astype(np.float32)
        weights = rng.lognormal(0.0, 1.0, self.clusters)
        self.weights = weights / weights.sum()
        self.dimension = dimension

    def _draw(self, count: int, rng: np.random.Generator) -> np.ndarray:
        """``count`` unit vectors: a centre drawn by weight, spread in the subspace, noise."""
        which = rng.choice(self.clusters, size=count, p=self.weights)
        inside = self.centres[which]
        inside += WITHIN_CLUSTER_SIGMA * rng.standard_normal((count, SUBSPACE), dtype=np.float32)
        vectors = inside @ self.basis
        vectors += ISOTROPIC_SIGMA * rng.standard_normal((count, self.dimension), dtype=np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors
