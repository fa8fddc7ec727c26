import pytest
import torch

from geofm.models import create_model
from geofm.tasks.probe import extract_features, knn_leave_one_out, knn_scores


def test_knn_finds_the_class_of_the_nearest_cluster():
    torch.manual_seed(0)
    centres = torch.eye(3) * 5
    bank = torch.cat([c + 0.1 * torch.randn(4, 3) for c in centres])
    labels = torch.arange(3).repeat_interleave(4)
    queries = centres + 0.1 * torch.randn(3, 3)
    assert knn_scores(bank, labels, queries, 3, 3).argmax(1).tolist() == [0, 1, 2]
    assert knn_leave_one_out(bank, labels, k=3) == 1.0


def test_votes_are_weighted_by_similarity_and_multilabel_averages_the_neighbours():
    bank = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
    labels = torch.tensor([0, 0, 1])
    query = torch.tensor([[0.2, 1.0]])
    scores = knn_scores(bank, labels, query, k=3, num_classes=2, temperature=0.1)
    sim = torch.nn.functional.normalize(query, dim=1) @ torch.nn.functional.normalize(bank, dim=1).T
    w = (sim[0] / 0.1).exp()
    torch.testing.assert_close(scores[0], torch.stack([w[0] + w[1], w[2]]))
    assert scores.argmax(1).item() == 1  # one close neighbour outvotes two far ones
    hot = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    multi = knn_scores(bank, hot, query, k=3, num_classes=2, temperature=0.1, multilabel=True)
    torch.testing.assert_close(multi[0], (w[:, None] * hot).sum(0) / w.sum())


def test_leave_one_out_does_not_let_a_point_vote_for_itself():
    bank = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    labels = torch.tensor([0, 1])
    assert knn_leave_one_out(bank, labels, k=1) == 0.0  # each sees only the other class


def test_k_is_capped_at_the_bank_and_an_empty_bank_refused():
    bank, labels = torch.rand(3, 2), torch.tensor([0, 1, 1])
    assert torch.equal(knn_scores(bank, labels, bank, 10, 2), knn_scores(bank, labels, bank, 3, 2))
    with pytest.raises(ValueError, match=r"k=1 neighbours from a bank of 0"):
        knn_scores(bank[:1], labels[:1], bank[:1], 1, 2, exclude_self=True)
    with pytest.raises(ValueError, match="exclude_self needs the bank as queries"):
        knn_scores(bank, labels, bank[:1], 1, 2, exclude_self=True)


def test_extract_features_gives_the_encoders_head_input_and_restores_its_mode():
    model = create_model("less_vit_tiny", depth=1, embed_dim=32, num_heads=2, rank=2)
    batch = {
        "image": torch.rand(3, 4, 32, 32),
        "wavelengths": torch.tensor([490.0, 560.0, 665.0, 842.0]),
        "gsd": torch.full((3,), 10.0),
        "label": torch.tensor([2, 0, 1]),
        "bands": ("B02", "B03", "B04", "B08"),
    }
    model.train()
    feats, labels = extract_features(model, [batch, batch])
    assert model.training and feats.shape == (6, 32) and labels.tolist() == [2, 0, 1] * 2
    with torch.no_grad():
        model.eval()
        grid = model.forward_features(batch["image"], batch["wavelengths"], batch["gsd"])
        torch.testing.assert_close(feats[:3], model.forward_head(grid, pre_logits=True))
    with pytest.raises(ValueError, match="no batches"):
        extract_features(model, [])
