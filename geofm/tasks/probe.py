"""Frozen-encoder probes: the features of a dataset and a weighted cosine kNN classifier.

These are the one feature extractor and the one kNN of geofm: the pretraining report,
notebook 04 and every GFM-Bench protocol on frozen features use them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
import torch.nn.functional as F

__all__ = ["batch_to", "encoder_features", "extract_features", "knn_scores", "knn_leave_one_out"]


def batch_to(batch: dict[str, Any], device) -> dict[str, Any]:
    """A copy of a collated batch with every tensor on ``device`` (names and other values
    as they are)."""
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def encoder_features(model: torch.nn.Module, batch: dict[str, Any]) -> torch.Tensor:
    """Global-CLS features ``(B, D)`` of a registry scene encoder (the input of its head)."""
    # duck-typed: any module with the encoders' forward_features / forward_head
    encoder: Any = model
    grid = encoder.forward_features(batch["image"], batch["wavelengths"], batch["gsd"])
    return encoder.forward_head(grid, pre_logits=True)


@torch.no_grad()
def extract_features(
    model: torch.nn.Module,
    batches: Iterable[dict[str, Any]],
    device="cpu",
    *,
    features: Callable[[torch.nn.Module, dict], torch.Tensor] | None = None,
    target: str | Callable[[dict], torch.Tensor] = "label",
    progress: bool = False,
    desc: str = "features",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Features ``(n, D)`` (float32, CPU) and targets ``(n, ...)`` of collated batches.

    Args:
        model: run in eval mode on ``device`` (moved there, as ``Module.to`` does); its
            training mode is restored afterwards.
        features: ``features(model, batch) -> (B, D)``; default :func:`encoder_features`.
        target: the batch key of the targets, or a function of the batch giving them.
    """
    features = features or encoder_features
    was_training = model.training
    model = model.to(device).eval()
    if progress:
        from tqdm.auto import tqdm

        batches = tqdm(batches, desc=desc, leave=False)
    feats, targets = [], []
    try:
        for batch in batches:
            batch = batch_to(batch, device)
            feats.append(features(model, batch).float().cpu())
            y = target(batch) if callable(target) else torch.as_tensor(batch[target])
            targets.append(y.cpu())
    finally:
        model.train(was_training)
    if not feats:
        raise ValueError("no batches to extract features from")
    return torch.cat(feats), torch.cat(targets)


def knn_scores(
    bank: torch.Tensor,
    bank_targets: torch.Tensor,
    queries: torch.Tensor,
    k: int,
    num_classes: int,
    *,
    temperature: float = 0.07,
    multilabel: bool = False,
    exclude_self: bool = False,
) -> torch.Tensor:
    """Class scores ``(m, K)`` from the ``k`` most cosine-similar bank entries, each voting
    with weight ``exp(similarity / temperature)`` (Wu et al., "Unsupervised Feature Learning
    via Non-Parametric Instance Discrimination", CVPR 2018; the kNN of DINO).

    Args:
        bank: ``(n, D)`` features with targets ``bank_targets``: class ids ``(n,)``, or
            multi-hot ``(n, K)`` with ``multilabel`` (the scores are then the weighted mean
            of the neighbours' vectors).
        queries: ``(m, D)``.
        k: neighbours; more than the bank holds is the whole bank.
        exclude_self: the queries are the bank itself and an entry does not vote for itself
            (leave-one-out).
    """
    n = bank.shape[0] - int(exclude_self)
    if k < 1 or n < 1:
        raise ValueError(f"k={k} neighbours from a bank of {n} entries")
    k = min(k, n)
    sim = F.normalize(queries, dim=1) @ F.normalize(bank, dim=1).T
    if exclude_self:
        if queries.shape[0] != bank.shape[0]:
            raise ValueError(
                f"exclude_self needs the bank as queries: {queries.shape[0]} "
                f"queries, {bank.shape[0]} bank entries"
            )
        sim.fill_diagonal_(-float("inf"))
    top, idx = sim.topk(k, dim=1)
    weight = (top / temperature).exp()
    if multilabel:
        neigh = bank_targets[idx].float()  # (m, k, K)
        return (weight[..., None] * neigh).sum(1) / weight.sum(1, keepdim=True)
    votes = torch.zeros(queries.shape[0], num_classes)
    votes.scatter_add_(1, bank_targets[idx].long(), weight)
    return votes


def knn_leave_one_out(
    features: torch.Tensor, labels: torch.Tensor, k: int = 5, temperature: float = 0.07
) -> float:
    """Top-1 accuracy of leave-one-out weighted cosine kNN over one labelled set."""
    labels = labels.long()
    scores = knn_scores(
        features,
        labels,
        features,
        k,
        int(labels.max()) + 1,
        temperature=temperature,
        exclude_self=True,
    )
    return float((scores.argmax(1) == labels).float().mean())
