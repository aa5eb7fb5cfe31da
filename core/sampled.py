"""A matrix product read only at a fixed set of entries (a sampled dense-dense product), with its
gradients, for losses on the observed entries of a sparse matrix.

Why: an autoencoder on rating rows fits only the observed ratings (a few percent of the matrix), but
a dense output layer computes, and back-propagates through, every entry. `sampled_product(a, b,
pattern)` computes (a @ b) at the pattern's entries only, and its backward pass is two sparse-dense
products (Gᵀ-ordered values come from a permutation fixed with the pattern). On a 1,682 × 943
matrix with 5 % observed and a 500-wide hidden layer, a forward and backward pass takes about 15 ms
on 2 CPU cores, against 35 ms dense and 29 ms for `torch.sparse.sampled_addmm`'s own backward.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import torch


def dense_only(device: torch.device) -> bool:
    """Whether the sparse-matrix kernels these helpers use are missing or partial on the device
    (Apple's MPS). There every helper builds the same products densely: more work, same numbers, so
    callers need no device checks of their own."""
    return device.type == "mps"


def sparse_mm(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """x @ weight for an x that may be sparse (csr) or, on a dense-only device, dense."""
    return torch.sparse.mm(x, weight) if x.layout != torch.strided else x @ weight


def _csr(crow: torch.Tensor, col: torch.Tensor, values: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    with warnings.catch_warnings():  # "sparse CSR support is in beta": the ops used here are long-standing
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(crow, col, values, size=shape, check_invariants=False)


@dataclass(frozen=True)
class Pattern:
    """Where a (rows × cols) matrix is observed, in row-major (csr) order: `row[k]`, `col[k]` is the
    k-th entry; `transpose` reorders entry values into the transpose's csr order."""

    shape: tuple[int, int]
    row: torch.Tensor
    col: torch.Tensor
    crow: torch.Tensor
    t_crow: torch.Tensor
    t_col: torch.Tensor
    transpose: torch.Tensor

    @classmethod
    def of(cls, mask: torch.Tensor) -> Pattern:
        """The pattern of a dense boolean mask (e.g. `ratings != 0`)."""
        if mask.dim() != 2:
            raise ValueError(f"a pattern is 2-D, got shape {tuple(mask.shape)}")
        n_rows, n_cols = mask.shape
        row, col = mask.nonzero(as_tuple=True)
        crow = torch.zeros(n_rows + 1, dtype=torch.long, device=mask.device)
        crow[1:] = torch.bincount(row, minlength=n_rows).cumsum(0)
        return cls.from_csr(crow, col, (n_rows, n_cols))

    @classmethod
    def from_csr(cls, crow: torch.Tensor, col: torch.Tensor, shape: tuple[int, int]) -> Pattern:
        """The pattern of a csr structure (row offsets, column indices sorted within each row),
        without building a dense mask."""
        n_rows, n_cols = shape
        row = torch.repeat_interleave(torch.arange(n_rows, device=crow.device), crow[1:] - crow[:-1])
        transpose = torch.argsort(col * n_rows + row)
        t_crow = torch.zeros(n_cols + 1, dtype=torch.long, device=col.device)
        t_crow[1:] = torch.bincount(col, minlength=n_cols).cumsum(0)
        return cls((n_rows, n_cols), row, col, crow, t_crow, row[transpose], transpose)

    @property
    def nnz(self) -> int:
        return int(self.col.numel())

    def csr(self, values: torch.Tensor) -> torch.Tensor:
        """The sparse matrix with these entry values (in the pattern's order); a dense one on a
        dense-only device."""
        if dense_only(values.device):
            return values.new_zeros(self.shape).index_put((self.row, self.col), values)
        return _csr(self.crow, self.col, values, self.shape)

    def csr_transposed(self, values: torch.Tensor) -> torch.Tensor:
        """The transpose of `csr(values)`, as a csr matrix (dense on a dense-only device)."""
        if dense_only(values.device):
            return self.csr(values).T
        return _csr(self.t_crow, self.t_col, values[self.transpose], (self.shape[1], self.shape[0]))

    def gather(self, dense: torch.Tensor) -> torch.Tensor:
        """A dense matrix's values at the pattern's entries."""
        return dense[self.row, self.col]


def _sampled(a: torch.Tensor, b: torch.Tensor, pattern: Pattern) -> torch.Tensor:
    if dense_only(a.device):
        return (a @ b)[pattern.row, pattern.col]
    ones = pattern.csr(torch.ones(pattern.nnz, dtype=a.dtype, device=a.device))
    return torch.sparse.sampled_addmm(ones, a, b, beta=0.0).values()


class _SampledProduct(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, a: torch.Tensor, b: torch.Tensor, pattern: Pattern) -> torch.Tensor:
        ctx.save_for_backward(a, b)
        ctx.pattern = pattern
        return _sampled(a, b, pattern)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None, None]:
        a, b = ctx.saved_tensors
        pattern: Pattern = ctx.pattern
        grad_a = pattern.csr(grad) @ b.T if ctx.needs_input_grad[0] else None
        grad_b = (pattern.csr_transposed(grad) @ a).T if ctx.needs_input_grad[1] else None
        return grad_a, grad_b, None


class _SparseDenseProduct(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, values: torch.Tensor, b: torch.Tensor, pattern: Pattern) -> torch.Tensor:
        ctx.save_for_backward(values, b)
        ctx.pattern = pattern
        return pattern.csr(values) @ b

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None, None]:
        values, b = ctx.saved_tensors
        pattern: Pattern = ctx.pattern
        grad_values = _sampled(grad, b.T, pattern) if ctx.needs_input_grad[0] else None
        grad_b = pattern.csr_transposed(values) @ grad if ctx.needs_input_grad[1] else None
        return grad_values, grad_b, None


def sparse_dense_product(values: torch.Tensor, b: torch.Tensor, pattern: Pattern) -> torch.Tensor:
    """`pattern.csr(values) @ b`, differentiable in the entry values too (their gradient is the
    output gradient times bᵀ read at the pattern: a sampled product), for an input that is sparse
    but computed (a convolution of sparse rows) rather than given."""
    if values.shape != (pattern.nnz,) or b.shape[0] != pattern.shape[1]:
        raise ValueError(f"cannot multiply {tuple(values.shape)} values at a {pattern.shape} pattern "
                         f"by {tuple(b.shape)}")
    return _SparseDenseProduct.apply(values, b, pattern)


def sampled_product(a: torch.Tensor, b: torch.Tensor, pattern: Pattern) -> torch.Tensor:
    """(a @ b) at the pattern's entries, in its order: `pattern.gather(a @ b)` without the rest."""
    if a.shape[0] != pattern.shape[0] or b.shape[1] != pattern.shape[1] or a.shape[1] != b.shape[0]:
        raise ValueError(f"cannot read a {tuple(a.shape)} @ {tuple(b.shape)} product at a {pattern.shape} pattern")
    return _SampledProduct.apply(a, b, pattern)


__all__ = ["Pattern", "dense_only", "sampled_product", "sparse_dense_product", "sparse_mm"]
