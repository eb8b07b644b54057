"""Single-head graph attention (PyG's ``GATConv``) with its edge work done as sparse-matrix products.

For one head, with z_i = W x_i (``lin``), a_s = z att_src and a_d = z att_dst, PyG's ``GATConv`` computes

    e_ij     = LeakyReLU_0.2(a_s[j] + a_d[i])                          for every edge j -> i
    alpha_ij = exp(e_ij - max_j' e_ij') / (sum_j' exp(e_ij' - max_j' e_ij') + 1e-16)   (softmax over i's sources)
    out_i    = sum_j alpha_ij z_j  (+ bias)

by message passing: it gathers z_j for every edge (E x d) and scatters the products back.  Sorting the edges by
target once per edge list makes the attention matrix A = [alpha_ij] a CSR matrix whose rows are the targets, so

    out = A z,     dL/dz = A^T dL/dout,     dL/dalpha_ij = <dL/dout_i, z_j>  (sampled on the edges)

are two sparse-dense products and one sampled dense-dense product (:class:`_AttentionProduct`); the softmax runs
on the E scores alone.  :class:`GATLayer` is ``GATConv`` itself (same parameters, initialisation, state dict and
Lipschitz normalisation of ``lin``) with this forward pass where it applies (one head, no edge features, no
attention dropout in training, self-loops given with the edges), and PyG's own forward pass otherwise.  The two
agree to float rounding (tests/test_attention.py); on the 2-core CPU a 64-layer residual-GAT epoch takes about half
the time of PyG's message passing (benchmarks/bench_library.py).
"""
from __future__ import annotations

import weakref

import torch
import torch.nn.functional as F

__all__ = ["GATLayer", "attention_structure"]

_STRUCTURES: dict = {}


def attention_structure(edge_index: torch.Tensor, num_nodes: int):
    """The CSR layout of the edges j -> i sorted by target i (then source j), cached while ``edge_index`` is alive
    and unmodified: (target of each sorted edge, source of each, crow, col, permutation to the CSR of the
    transpose, its crow and col).  Indices of the CSR are int32 (the product converts int64 ones every call)."""
    key = (id(edge_index), num_nodes)
    hit = _STRUCTURES.get(key)
    if hit is not None and hit[0]() is edge_index and hit[1] == edge_index._version:
        return hit[2]
    src, dst = edge_index[0].long(), edge_index[1].long()
    order = torch.argsort(dst * num_nodes + src)
    src, dst = src[order], dst[order]
    crow = torch.zeros(num_nodes + 1, dtype=torch.long, device=src.device)
    crow[1:] = torch.cumsum(torch.bincount(dst, minlength=num_nodes), 0)
    perm = torch.argsort(src * num_nodes + dst)       # the sorted edges in the order of A^T's CSR (rows = sources)
    crow_t = torch.zeros(num_nodes + 1, dtype=torch.long, device=src.device)
    crow_t[1:] = torch.cumsum(torch.bincount(src, minlength=num_nodes), 0)
    i32 = torch.int32
    rec = (dst, src, crow.to(i32), src.to(i32), perm, crow_t.to(i32), dst[perm].to(i32))
    if len(_STRUCTURES) > 8:
        _STRUCTURES.clear()
    _STRUCTURES[key] = (weakref.ref(edge_index), edge_index._version, rec)
    return rec


class _AttentionProduct(torch.autograd.Function):
    """out = A z for the CSR matrix A with the given layout and values alpha (one per sorted edge)."""

    @staticmethod
    def forward(ctx, alpha, z, crow, col, perm, crow_t, col_t):
        n = z.shape[0]
        A = torch.sparse_csr_tensor(crow, col, alpha, (n, n), check_invariants=False)
        ctx.save_for_backward(alpha, z)
        ctx.layout = (crow, col, perm, crow_t, col_t)
        return A @ z

    @staticmethod
    def backward(ctx, grad_out):
        alpha, z = ctx.saved_tensors
        crow, col, perm, crow_t, col_t = ctx.layout
        n = z.shape[0]
        grad_alpha = grad_z = None
        if ctx.needs_input_grad[0]:   # <dL/dout_i, z_j> on the edges: A's pattern sampled from dL/dout z^T
            pattern = torch.sparse_csr_tensor(crow, col, torch.zeros_like(alpha), (n, n), check_invariants=False)
            grad_alpha = torch.sparse.sampled_addmm(pattern, grad_out.contiguous(), z.t(), beta=0.0).values()
        if ctx.needs_input_grad[1]:   # A^T dL/dout
            AT = torch.sparse_csr_tensor(crow_t, col_t, alpha[perm], (n, n), check_invariants=False)
            grad_z = AT @ grad_out
        return grad_alpha, grad_z, None, None, None, None, None


def _gat_class():
    from torch_geometric.nn import GATConv

    class GATLayer(GATConv):
        """PyG's ``GATConv`` whose single-head forward pass on a plain edge list runs as sparse products
        (:mod:`oversmoothing.models.attention`); everything else is ``GATConv``'s."""

        def _fast(self, x, edge_index, args, kwargs) -> bool:
            return (not args and not kwargs and isinstance(x, torch.Tensor) and isinstance(edge_index, torch.Tensor)
                    and edge_index.dim() == 2 and not edge_index.is_sparse and self.heads == 1 and self.lin is not None
                    and not self.add_self_loops and self.lin_edge is None and self.res is None
                    and not (self.training and self.dropout > 0))

        def forward(self, x, edge_index, *args, **kwargs):
            if not self._fast(x, edge_index, args, kwargs):
                return super().forward(x, edge_index, *args, **kwargs)
            dst, src, crow, col, perm, crow_t, col_t = attention_structure(edge_index, x.shape[0])
            z = self.lin(x)                                              # z_i = W x_i
            a_s = (z * self.att_src.view(1, -1)).sum(-1)                 # as PyG: (x_src * att_src).sum(-1)
            a_d = (z * self.att_dst.view(1, -1)).sum(-1)
            e = F.leaky_relu(a_s[src] + a_d[dst], self.negative_slope)  # e_ij on the edges sorted by target i
            e_max = torch.segment_reduce(e.detach(), "max", offsets=crow.long())   # PyG's softmax: a detached max
            ex = (e - e_max[dst]).exp()
            total = torch.zeros(x.shape[0], dtype=ex.dtype, device=ex.device).index_add(0, dst, ex) + 1e-16
            alpha = ex / total[dst]
            out = _AttentionProduct.apply(alpha, z, crow, col, perm, crow_t, col_t)   # out_i = sum_j alpha_ij z_j
            return out if self.bias is None else out + self.bias

    return GATLayer


def GATLayer(*args, **kwargs):
    """A :class:`GATLayer` (``GATConv``'s arguments); PyG is imported on first use."""
    global _GAT
    if _GAT is None:
        _GAT = _gat_class()
    return _GAT(*args, **kwargs)


_GAT = None
