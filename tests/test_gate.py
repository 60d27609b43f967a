"""PIA gate: forward vs formula, gradcheck, low-precision error rule, opcheck, module."""

from __future__ import annotations

import pytest
import torch
from conftest import backend_params

from qupaint.gate import PIAGate, pia_gate

BACKENDS = backend_params("pia_gate")


def formula(tokens, alpha, w, b):
    return tokens * torch.sigmoid(w * alpha + b)[..., None]


def leaves(shape, dtype=torch.float32, seed=0, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    t = torch.randn(*shape, generator=g, dtype=torch.float64).to(device, dtype).requires_grad_()
    a = torch.rand(*shape[:-1], generator=g, dtype=torch.float64).to(device, torch.float32)
    w = torch.tensor(1.3, device=device, requires_grad=True)
    b = torch.tensor(-0.4, device=device, requires_grad=True)
    return t, a.requires_grad_(), w, b


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", [(2, 9, 33), (17, 65)], ids=["B2-k9-d33", "k17-d65"])
def test_forward_backward_vs_formula(backend, shape):
    name, dev = backend
    t, a, w, b = leaves(shape, device=dev)
    out = pia_gate(t, a, w, b, backend=name)
    assert out.device.type == dev
    g = torch.randn_like(out)
    out.backward(g)
    got = [x.grad.clone() for x in (t, a, w, b)]
    t2, a2, w2, b2 = (x.detach().double().requires_grad_() for x in (t, a, w, b))
    ref = formula(t2, a2, w2, b2)
    ref.backward(g.double())
    assert out.dtype == t.dtype and (out.double() - ref).abs().max() < 1e-6
    for x, y in zip(got, (t2, a2, w2, b2), strict=True):
        assert (x.double() - y.grad).abs().max() < 1e-4 * max(1.0, float(y.grad.abs().max()))


def test_gradcheck_float64_all_inputs():
    t, a, w, b = (x.detach().double().requires_grad_() for x in leaves((2, 5, 7)))
    assert torch.autograd.gradcheck(lambda *xs: pia_gate(*xs), (t, a, w, b))
    t1, a1 = t[0].detach().requires_grad_(), a[0].detach().requires_grad_()
    assert torch.autograd.gradcheck(lambda *xs: pia_gate(*xs), (t1, a1, w, b))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_low_precision_error_rule(backend, dtype):
    # STYLE.md: error vs fp64 at most 2x that of plain torch at the same precision
    name, dev = backend
    if (name, dev) == ("triton", "cpu") and dtype == torch.bfloat16:
        pytest.skip("numpy (the Triton interpreter) has no bfloat16")
    t, a, w, b = leaves((3, 16, 64), dtype, device=dev)
    out = pia_gate(t, a, w, b, backend=name)
    g = torch.randn(out.shape, dtype=torch.float64).to(dev, dtype)
    out.backward(g)
    exact = formula(t.double(), a.double(), w.double(), b.double())
    plain = t.detach() * torch.sigmoid(w.detach() * a.detach() + b.detach()).to(dtype)[..., None]
    assert out.dtype == dtype
    err, err_plain = (out.double() - exact).abs().max(), (plain.double() - exact).abs().max()
    assert err <= 2 * err_plain + 1e-12
    td, ad, wd, bd = (x.detach().double().requires_grad_() for x in (t, a, w, b))
    formula(td, ad, wd, bd).backward(g.double())
    # reductions over 3*16*64 products accumulate in fp32: w, b grads near fp32 accuracy
    assert abs(float(w.grad) - float(wd.grad)) < 1e-4 * max(1.0, abs(float(wd.grad)))
    assert abs(float(b.grad) - float(bd.grad)) < 1e-4 * max(1.0, abs(float(bd.grad)))
    assert (t.grad.double() - td.grad).abs().max() <= 2 * (
        (g * torch.sigmoid(w.detach() * a.detach() + b.detach()).to(dtype)[..., None]).double()
        - td.grad
    ).abs().max() + 1e-12


def test_opcheck_registered_ops():
    from torch.library import opcheck

    t, a, w, b = (x.detach() for x in leaves((2, 4, 8)))
    opcheck(torch.ops.qupaint.pia_gate_fwd.default, (t, a, w, b, ""))
    opcheck(torch.ops.qupaint.pia_gate_bwd.default, (torch.randn_like(t), t, a, w, b, ""))


def test_module_init_and_ablation():
    gate = PIAGate()
    params = dict(gate.named_parameters())
    assert set(params) == {"w", "b"} and all(p.numel() == 1 for p in params.values())
    t, a, _, _ = (x.detach() for x in leaves((2, 16, 32)))
    # at init every token gets the same scale, which the projector's LayerNorm removes
    ln = torch.nn.LayerNorm(32, elementwise_affine=False, eps=1e-12)
    assert torch.allclose(ln(gate(t, a)), ln(t), atol=1e-5)
    off = PIAGate(enabled=False)
    assert off(t, a) is t
    g = PIAGate(init_w=2.0)
    g(t, a).sum().backward()  # gradients reach both parameters
    assert g.w.grad is not None and g.b.grad is not None
    assert torch.isfinite(g.w.grad) and g.w.grad != 0 and torch.isfinite(g.b.grad) and g.b.grad != 0


def test_bad_input():
    t = torch.randn(2, 4, 8)
    with pytest.raises(ValueError, match="alpha"):
        pia_gate(t, torch.rand(2, 5), 1.0, 0.0)
    with pytest.raises(ValueError, match="scalar"):
        pia_gate(t, torch.rand(2, 4), torch.ones(2), 0.0)
    with pytest.raises(TypeError, match="floating"):
        pia_gate(t.long(), torch.rand(2, 4), 1.0, 0.0)
    with pytest.raises(ValueError, match="shape"):
        pia_gate(torch.randn(8), torch.rand(8), 1.0, 0.0)


def test_torch_compile_traces_the_registered_ops():
    # eager calls the kernels directly; under torch.compile the gate goes through the
    # registered ops (qupaint::pia_gate_fwd / _bwd), with the same values and gradients
    t, a, w, b = leaves((2, 6, 16))
    f = torch.compile(lambda *xs: pia_gate(*xs), backend="aot_eager", fullgraph=True)
    out = f(t, a, w, b)
    g = torch.randn_like(out)
    out.backward(g)
    got = [x.grad.clone() for x in (t, a, w, b)]
    t2, a2, w2, b2 = (x.detach().requires_grad_() for x in (t, a, w, b))
    ref = pia_gate(t2, a2, w2, b2)
    ref.backward(g)
    assert torch.allclose(out, ref)
    for x, y in zip(got, (t2, a2, w2, b2), strict=True):
        assert torch.allclose(x, y.grad, atol=1e-6)
