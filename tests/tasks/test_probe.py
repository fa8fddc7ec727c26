import pytest
import torch

from geofm.tasks.probe import knn_leave_one_out, knn_predict


def test_knn_finds_the_class_of_the_nearest_cluster():
    torch.manual_seed(0)
    centres = torch.eye(3) * 5
    bank = torch.cat([c + 0.1 * torch.randn(4, 3) for c in centres])
    labels = torch.arange(3).repeat_interleave(4)
    queries = centres + 0.1 * torch.randn(3, 3)
    assert knn_predict(bank, labels, queries, k=3).tolist() == [0, 1, 2]
    assert knn_leave_one_out(bank, labels, k=3) == 1.0


def test_leave_one_out_does_not_let_a_point_vote_for_itself():
    bank = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    labels = torch.tensor([0, 1])
    assert knn_leave_one_out(bank, labels, k=1) == 0.0  # each sees only the other class


def test_k_larger_than_the_bank_is_refused():
    with pytest.raises(ValueError, match=r"k=3 needs 1..2"):
        knn_predict(torch.rand(3, 2), torch.zeros(3, dtype=torch.long), torch.rand(1, 2), 3,
                    exclude_self=True)
