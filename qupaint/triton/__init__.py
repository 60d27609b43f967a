"""Triton kernels (GPU; on CPU under ``TRITON_INTERPRET=1`` for tests)."""
