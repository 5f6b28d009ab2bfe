"""The RoPE rotated-dimension rule lives in one place (sigprop.spec.rope_dims): r = int(f · d_h), even."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sigprop.spec import Spec, rope_dims


@given(st.integers(1, 64), st.integers(0, 64))
def test_rule_counts_rotated_dimensions(half_heads, k):
    d_h = 2 * half_heads
    r_wanted = 2 * min(k, half_heads)  # an even count of at most d_h dimensions
    f = r_wanted / d_h
    assert rope_dims(d_h, f) == r_wanted  # exact even fractions, despite the float product


def test_odd_count_and_bad_fraction_are_refused():
    with pytest.raises(ValueError, match="even"):
        rope_dims(10, 0.3)
    with pytest.raises(ValueError, match=r"rope_fraction must be in \[0, 1\]"):
        rope_dims(16, 1.5)
    assert rope_dims(64, 0.25) == 16 and rope_dims(10, 0.25) == 2  # HF's int(d_h f), floor


def test_spec_property_uses_the_head_width():
    s = Spec(width=96, heads=3, rope_fraction=0.5)
    assert s.head_dim == 32 and s.rope_dims == 16
    assert Spec().rope_dims == 0
    with pytest.raises(ValueError, match="even"):
        Spec(width=30, heads=3, rope_fraction=0.3).rope_dims  # noqa: B018  (d_h = 10 → r = 3)


def test_the_twin_and_the_theory_read_the_same_rule():
    from sigprop.theory.rope import rotary_dims

    for d_h in (2, 8, 10, 64, 128):
        for f in (0.0, 0.25, 0.5, 0.75, 1.0):
            try:
                want = rope_dims(d_h, f)
            except ValueError:
                with pytest.raises(ValueError):
                    rotary_dims(f, d_h)
                continue
            assert rotary_dims(f, d_h) == want
    torch = pytest.importorskip("torch")  # noqa: F841
    from sigprop import nn as twin

    assert twin.rope_dims is rope_dims
