"""core.sampled: a product read at fixed entries is the dense product read there, in values and
in gradients, and refuses shapes that do not fit its pattern."""

from __future__ import annotations

import pytest
import torch

from core.sampled import Pattern, sampled_product, sparse_dense_product


def _case(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    mask = torch.rand(9, 7, generator=gen) < 0.35
    mask[3] = False  # an empty row and an empty column: offsets must still line up
    mask[:, 5] = False
    a = torch.randn(9, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    b = torch.randn(4, 7, generator=gen, dtype=torch.float64, requires_grad=True)
    return mask, a, b


def test_the_sampled_product_is_the_dense_product_at_the_entries() -> None:
    mask, a, b = _case()
    pattern = Pattern.of(mask)
    assert pattern.nnz == int(mask.sum())
    torch.testing.assert_close(sampled_product(a, b, pattern), (a @ b)[mask])  # row-major, as a mask reads
    weights = torch.randn(pattern.nnz, dtype=torch.float64)
    ours = torch.autograd.grad((sampled_product(a, b, pattern) * weights).sum(), (a, b))
    dense = torch.autograd.grad(((a @ b)[mask] * weights).sum(), (a, b))
    for got, want in zip(ours, dense):
        torch.testing.assert_close(got, want)


def test_gradients_pass_a_numerical_check_also_for_a_transposed_operand() -> None:
    mask, a, b = _case(1)
    pattern = Pattern.of(mask)
    assert torch.autograd.gradcheck(lambda a, b: sampled_product(a, b, pattern), (a, b))
    bt = b.detach().T.clone().requires_grad_(True)  # a non-contiguous right operand
    assert torch.autograd.gradcheck(lambda a, bt: sampled_product(a, bt.T, pattern), (a, bt))


def test_the_transposed_csr_is_the_transpose() -> None:
    mask, _, _ = _case(2)
    pattern = Pattern.of(mask)
    values = torch.arange(1, pattern.nnz + 1, dtype=torch.float64)
    dense = pattern.csr(values).to_dense()
    torch.testing.assert_close(pattern.csr_transposed(values).to_dense(), dense.T)
    torch.testing.assert_close(pattern.gather(dense), values)


def test_shapes_that_do_not_fit_the_pattern_are_refused() -> None:
    mask, a, b = _case()
    with pytest.raises(ValueError, match="pattern"):
        sampled_product(a[:5], b, Pattern.of(mask))
    with pytest.raises(ValueError, match="2-D"):
        Pattern.of(mask[0])


def test_a_pattern_from_a_csr_structure_is_the_pattern_of_its_mask() -> None:
    mask, _, _ = _case(3)
    dense = mask.to_sparse_csr()
    ours = Pattern.from_csr(dense.crow_indices(), dense.col_indices(), tuple(mask.shape))
    want = Pattern.of(mask)
    for field in ("row", "col", "crow", "t_crow", "t_col", "transpose"):
        assert torch.equal(getattr(ours, field), getattr(want, field)), field
    torch.testing.assert_close(ours.gather(mask.double()), torch.ones(ours.nnz, dtype=torch.float64))


def test_on_a_dense_only_device_the_helpers_give_the_same_products_densely(monkeypatch: pytest.MonkeyPatch) -> None:
    """MPS lacks the sparse kernels used here; there the helpers compute densely (forced on the CPU
    here): the values and gradients must not change, and no sparse tensor is built."""
    mask, a, b = _case(4)
    pattern = Pattern.of(mask)
    values = torch.randn(pattern.nnz, dtype=torch.float64, requires_grad=True)
    c = torch.randn(7, 3, dtype=torch.float64, requires_grad=True)

    def run() -> list[torch.Tensor]:
        sampled = sampled_product(a, b, pattern)
        product = sparse_dense_product(values, c, pattern)
        loss = (sampled ** 2).sum() + (product ** 3).sum()
        return [sampled.detach(), product.detach(), *torch.autograd.grad(loss, (a, b, values, c))]

    sparse = run()
    monkeypatch.setattr("core.sampled.dense_only", lambda device: True)
    assert pattern.csr(values.detach()).layout == torch.strided
    assert pattern.csr_transposed(values.detach()).layout == torch.strided
    for got, want in zip(run(), sparse):
        torch.testing.assert_close(got, want)
