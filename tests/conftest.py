"""Shared fixtures for the reasonlib unit suite: tiny models and tiny SFT configs.

Everything here is small, seeded and hermetic (no files outside pytest's tmp_path).
"""
from __future__ import annotations

import os

import pytest
import torch
from hypothesis import HealthCheck, settings

from reasonlib.core.model import GPT, ModelConfig
from reasonlib.train.sft import SFTConfig

# No example database on disk (hermetic), no per-example deadline (first calls are slow).
settings.register_profile("unit", database=None, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("unit")

# nbval re-executes the committed notebooks in kernels that inherit this environment: give
# them the thread count the committed outputs were made with (reasonlib.core.runtime)
from reasonlib.core.runtime import NOTEBOOK_THREADS  # noqa: E402

os.environ.setdefault("REASONLIB_THREADS", str(NOTEBOOK_THREADS))


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Run each test on one intra-op thread, then restore the previous setting.

    The models here are tiny, so a second thread buys nothing; but on a 2-core machine that
    is also running something else (CI neighbours, a notebook), torch's thread pool waits on
    the busy core and the suite measured ~6x slower (37 s instead of 6.5 s)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def make_model(seed: int = 0, n_layer: int = 2, n_head: int = 4, n_embd: int = 32,
               block_size: int = 32, pos: str = "rope", out_scale: float = 1.0, w_scale: float = 1.0) -> GPT:
    """A seeded, untrained tiny GPT in eval mode.

    ``out_scale`` multiplies the final LayerNorm gain, which scales every logit: an untrained
    model's logits are nearly flat (std ~0.1), a scale of ~20 gives a peaked distribution
    (no near-ties for greedy decoding, informative sampling statistics). ``w_scale``
    multiplies every matrix but the (tied) embedding, so attention and MLP mix strongly and
    greedy outputs vary with the prompt (otherwise the untrained model repeats its input).
    """
    torch.manual_seed(seed)
    m = GPT(ModelConfig(n_layer=n_layer, n_head=n_head, n_embd=n_embd, block_size=block_size,
                        pos=pos))
    with torch.no_grad():
        m.ln_f.weight.mul_(out_scale)
        for name, p in m.named_parameters():
            if p.dim() == 2 and not name.startswith("tok."):
                p.mul_(w_scale)
    m.eval()
    return m


@pytest.fixture
def model_factory():
    return make_model


@pytest.fixture
def tiny_model():
    return make_model()


@pytest.fixture
def peaked_model():
    return make_model(seed=1, out_scale=20.0, w_scale=5.0)


def tiny_sft_config(**kw) -> SFTConfig:
    base = dict(curriculum="targeted", fmt="plain", max_digits=2, seed=0,
                n_layer=1, n_head=2, n_embd=32, total_tokens=3000, batch_size=16,
                lr=3e-3, warmup_frac=0.05, eval_every=10**6, eval_n=3,
                eval_seed=1234)
    base.update(kw)
    return SFTConfig(**base)


@pytest.fixture
def sft_config_factory():
    return tiny_sft_config
