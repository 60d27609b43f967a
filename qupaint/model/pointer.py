"""A pointer-generator readout over the region tokens (See, Liu & Manning 2017, "Get To The
Point", ACL): how the compact model's language model reads its image.

Why. Trained from scratch for an hour on 2 cores, the compact LM learned the answers'
language prior and never the attention that finds a count or a box among its 192 region
tokens: its loss on an image's own regions and on another image's were equal at every
checkpoint. Answers are mostly *copies* of the region text (a count from its tally, a box, a
class name), so the readout gives copying a one-layer path with a direct gradient:

- keys and values of each region token from the LM's last hidden states of it and its two
  neighbours (the source is whole before the answer starts, so both sides are seen);
- one attention from each answer position over the region tokens (the fill slots masked),
  its scores raised by learned weights where a region token continues the answer's last
  1-3 tokens (:func:`continuations`), so that a box, once started, is copied in order;
- its context vector is added to the hidden state before the LM head (so "Yes", "No" or a
  class phrase can depend on what was read), and a gate mixes the LM head's distribution
  with the copy distribution (the attention scattered onto the region tokens' ids):

    p(w) = (1 - g) * softmax(lm_head(h + W_o c))[w] + g * sum_{j: id_j = w} a_j

The model's ``logits`` are then ``log p`` (softmax of them is p again), so greedy and
sampled generation and the constrained-decoding logits processors work unchanged.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["NGRAMS", "RegionPointer", "continuations", "mix_copy"]

#: the longest match of the continuation prior (:func:`continuations`)
NGRAMS = 3


def continuations(ids: torch.Tensor, recent: torch.Tensor) -> torch.Tensor:
    """Continuation features [B, T, S, NGRAMS] of source tokens ``ids`` [B, S] for the
    positions whose last tokens are ``recent`` [B, NGRAMS - 1 + T] (the T current input
    tokens after the NGRAMS - 1 before them): feature n of (t, j) is 1 when the n tokens
    before source token j equal the last n tokens at t. Copying a box token by token is
    then following the source: the prior a small model otherwise learns slowly as an
    induction head.

    >>> f = continuations(torch.tensor([[5, 6, 7, 8]]), torch.tensor([[0, 5, 6]]))
    >>> f[0, 0].tolist()  # after "5 6": token 7 follows a 2-token match, 6 a 1-token one
    [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 0.0]]
    """
    b, s = ids.shape
    t = recent.shape[1] - (NGRAMS - 1)
    feats, run = [], None
    for n in range(1, NGRAMS + 1):
        # the source token n before j (none before the start) ...
        before = nn.functional.pad(ids, (n, 0), value=-1)[:, :s]
        # ... against the input token n - 1 before t
        last = recent[:, NGRAMS - n : NGRAMS - n + t]
        eq = before[:, None, :] == last[:, :, None]
        run = eq if run is None else run & eq
        feats.append(run)
    return torch.stack(feats, -1).float()


class RegionPointer(nn.Module):
    """Attention from answer positions over region tokens, with a copy gate.

    >>> ptr = RegionPointer(8)
    >>> src = ptr.source(torch.randn(2, 5, 8))
    >>> h, attn, gate = ptr(torch.randn(2, 3, 8), src, torch.ones(2, 5, dtype=torch.bool))
    >>> tuple(h.shape), tuple(attn.shape), tuple(gate.shape)
    ((2, 3, 8), (2, 3, 5), (2, 3, 1))
    """

    def __init__(self, hidden: int):
        super().__init__()
        self.query = nn.Linear(hidden, hidden)
        self.key = nn.Linear(3 * hidden, hidden)
        self.value = nn.Linear(3 * hidden, hidden)
        self.out = nn.Linear(hidden, hidden)
        self.gate = nn.Linear(2 * hidden, 1)
        #: weights of the continuation prior: region token j scores higher when the 1, 2
        #: or 3 tokens before it are the answer's last 1, 2 or 3 tokens
        self.follow = nn.Parameter(torch.ones(NGRAMS))

    def source(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values [B, S, H] of region-token hidden states ``h`` [B, S, H]: each
        from the token and its neighbours (zeros past the ends)."""
        prev = nn.functional.pad(h, (0, 0, 1, 0))[:, :-1]
        nxt = nn.functional.pad(h, (0, 0, 0, 1))[:, 1:]
        x = torch.cat([prev, h, nxt], -1)
        return self.key(x), self.value(x)

    def forward(self, h: torch.Tensor, src: tuple[torch.Tensor, torch.Tensor],
                mask: torch.Tensor, follow: torch.Tensor | None = None,
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # fmt: skip
        """``h`` [B, T, H] hidden states, ``src`` from :meth:`source`, ``mask`` [B, S]
        (True: a region token to read), ``follow`` the :func:`continuations` features
        [B, T, S, NGRAMS] (or None). Returns the hidden states with the context added, the
        attention [B, T, S] and the copy gate [B, T, 1] (0 for a row with nothing to
        read)."""
        keys, values = src
        score = self.query(h) @ keys.transpose(1, 2) / math.sqrt(keys.shape[-1])
        if follow is not None:
            score = score + follow.to(score.dtype) @ self.follow
        score = score.float().masked_fill(~mask[:, None, :], float("-inf"))
        some = mask.any(1)[:, None, None]
        attn = torch.where(some, score.softmax(-1).nan_to_num(0.0), 0.0).to(h.dtype)
        ctx = attn @ values
        gate = torch.sigmoid(self.gate(torch.cat([h, ctx], -1))) * some
        return h + self.out(ctx), attn, gate


def mix_copy(logits: torch.Tensor, attn: torch.Tensor, gate: torch.Tensor,
             ids: torch.Tensor) -> torch.Tensor:  # fmt: skip
    """log p of the pointer-generator mixture: ``logits`` [B, T, V] of the LM head,
    ``attn`` [B, T, S] over source tokens ``ids`` [B, S], ``gate`` [B, T, 1].

    >>> lg = torch.zeros(1, 1, 4); a = torch.tensor([[[0.5, 0.5]]]); ids = torch.tensor([[2, 2]])
    >>> mix_copy(lg, a, torch.full((1, 1, 1), 0.5), ids).exp().squeeze().tolist()
    [0.125, 0.125, 0.625, 0.125]
    """
    gen = logits.float().softmax(-1)
    copy = torch.zeros_like(gen).scatter_add_(
        -1, ids[:, None, :].expand(-1, gen.shape[1], -1), attn.float()
    )
    g = gate.float()
    return ((1 - g) * gen + g * copy).clamp_min(1e-12).log()
