"""Encoders loaded from weights skip the random init their build would draw (a strict load overwrites every
weight): the loaded model equals one built with init and then loaded, bit for bit, and gives the same frames."""
from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch

from mmmos import extract
from mmmos.testing import m2d, muq, wavlm

MODULES = ("mmmos.extract.wavlm", "mmmos.extract.muq_encoder", "mmmos.extract.m2d")


def _checkpoint(name, d):
    return {"wavlm": lambda: wavlm.write_random_checkpoint(d / "wavlm", "tiny", fmt="hf-safetensors", seed=1),
            "muq": lambda: muq.write_random_checkpoint(d / "muq", "tiny", seed=1),
            "m2d": lambda: m2d.write_random_checkpoint(d / "m2d", "tiny")}[name]()


@pytest.mark.parametrize("name", ["wavlm", "muq", "m2d"])
def test_loading_without_init_equals_init_then_load(name, tmp_path, monkeypatch):
    import importlib

    path = _checkpoint(name, tmp_path)
    fast = extract.load_encoder(name, path, device="cpu")
    for mod in MODULES:  # the old way: every weight drawn at random, then overwritten by the load
        monkeypatch.setattr(importlib.import_module(mod), "weights_to_be_loaded", lambda active=True: contextlib.nullcontext())
    slow = extract.load_encoder(name, path, device="cpu")
    a, b = fast.model.state_dict(), slow.model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    x = (0.1 * np.random.default_rng(0).standard_normal(fast.sample_rate * 3)).astype(np.float32)
    assert np.array_equal(fast.embed(x), slow.embed(x))


def test_the_init_functions_are_put_back():
    from mmmos.extract.base import weights_to_be_loaded

    before = dict(vars(torch.nn.init))
    with weights_to_be_loaded():
        t = torch.ones(3)
        assert torch.nn.init.zeros_(t) is t and t.sum() == 3  # a no-op inside
    assert dict(vars(torch.nn.init)) == before
    with pytest.raises(RuntimeError), weights_to_be_loaded():
        raise RuntimeError("a failed build")
    assert dict(vars(torch.nn.init)) == before and torch.nn.init.zeros_(torch.ones(2)).sum() == 0


def test_hugging_face_code_loads_without_scikit_learn(tmp_path):
    """transformers' generation code imports scikit-learn (1.3-1.5 s of every start) for a decoding mode no
    encoder uses: a fresh process that loads WavLM and MuQ imports none of it, transformers still reports
    scikit-learn as it is, and the one sklearn function its generation code names still works."""
    import subprocess
    import sys

    pytest.importorskip("sklearn")
    w, m = _checkpoint("wavlm", tmp_path), _checkpoint("muq", tmp_path)
    code = (f"import sys\nfrom mmmos import extract\nextract.load_encoder('wavlm', {str(w)!r})\n"
            f"extract.load_encoder('muq', {str(m)!r})\nprint('sklearn' in sys.modules)\n"
            "from transformers.utils import is_sklearn_available\nprint(is_sklearn_available())\n"
            "from transformers.generation import candidate_generator as cg\n"
            "print(list(cg.roc_curve([0, 1, 1], [0.1, 0.4, 0.9])[1]))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    from sklearn.metrics import roc_curve

    assert r.stdout.split("\n")[:3] == ["False", "True", str(list(roc_curve([0, 1, 1], [0.1, 0.4, 0.9])[1]))]
