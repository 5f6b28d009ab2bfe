"""The README's second Python block (diagnose a model, apply the fix) runs as written."""

from __future__ import annotations

import contextlib
import io
import pathlib
import re

import pytest

pytest.importorskip("transformers")


def _blocks() -> list[str]:
    readme = (pathlib.Path(__file__).resolve().parents[1] / "README.md").read_text()
    return re.findall(r"```python\n(.*?)```", readme, re.S)


def test_readme_diagnose_block_runs_and_fixes_the_model():
    blocks = _blocks()
    assert len(blocks) >= 2
    block = blocks[1]
    imports = [ln for ln in block.splitlines() if ln.startswith(("import", "from"))]
    assert all(ln.startswith(("import transformers", "from sigprop import")) for ln in imports), imports
    ns: dict = {}
    with contextlib.redirect_stdout(io.StringIO()) as out:
        exec(block, ns)  # noqa: S102
    d, rec, model = ns["d"], ns["rec"], ns["model"]
    assert "support" in out.getvalue().lower()
    keys = d.to_dict()
    for k in ("model_type", "support", "spec", "label", "verdict", "recommendation", "predicted", "measured",
              "max_abs_err_rho", "max_abs_err_entropy"):
        assert k in keys, k
    # the fix reached the model: W_Q's std is the recommended one (3 % is ~10 standard errors of a std over
    # 768² entries), not BERT's 0.02
    std = float(model.encoder.layer[0].attention.self.query.weight.detach().std())
    assert std == pytest.approx(rec["qk_std"], rel=0.03)
    assert abs(std - 0.02) > 0.1 * 0.02
