"""Peers re-implemented for same-run speed comparisons, where the peer cannot be installed
as shipped (no package on PyPI); each module says what it follows and how faithfully."""
