"""Frozen-encoder probes: features of a dataset and a cosine k-nearest-neighbour classifier."""

from __future__ import annotations

from collections.abc import Iterable

import torch

__all__ = ["encode", "knn_predict", "knn_leave_one_out"]


@torch.no_grad()
def encode(model: torch.nn.Module, batches: Iterable[dict], device="cpu"
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """Global-CLS features (n, D) and labels (n,) of collated sample batches."""
    model = model.to(device).eval()
    feats, labels = [], []
    for batch in batches:
        image = batch["image"].to(device)
        grid = model.forward_features(image, batch["wavelengths"], batch["gsd"])
        feats.append(model.forward_head(grid, pre_logits=True).float().cpu())
        labels.append(torch.as_tensor(batch["label"]).cpu())
    return torch.cat(feats), torch.cat(labels)


def knn_predict(bank: torch.Tensor, bank_labels: torch.Tensor, queries: torch.Tensor, k: int,
                exclude_self: bool = False) -> torch.Tensor:
    """Majority class of the ``k`` most cosine-similar bank entries (ties: most similar).

    bank: (n, D); queries: (m, D). With ``exclude_self`` (queries == bank) an entry does not
    vote for itself: leave-one-out.
    """
    if k < 1 or k > bank.shape[0] - int(exclude_self):
        raise ValueError(f"k={k} needs 1..{bank.shape[0] - int(exclude_self)} neighbours")
    sim = torch.nn.functional.normalize(queries, dim=1) @ torch.nn.functional.normalize(
        bank, dim=1).T
    if exclude_self:
        sim.fill_diagonal_(-float("inf"))
    top, idx = sim.topk(k, dim=1)
    votes = torch.zeros(queries.shape[0], int(bank_labels.max()) + 1)
    # each neighbour votes 1 plus a tiny bonus for similarity, so ties go to the closest
    votes.scatter_add_(1, bank_labels[idx], 1.0 + 1e-3 * top)
    return votes.argmax(dim=1)


def knn_leave_one_out(features: torch.Tensor, labels: torch.Tensor, k: int = 5) -> float:
    """Top-1 accuracy of leave-one-out cosine kNN over one labelled set."""
    pred = knn_predict(features, labels, features, k, exclude_self=True)
    return float((pred == labels).float().mean())
