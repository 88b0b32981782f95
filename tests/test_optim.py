import math

import pytest
import torch

from engine.config import get_cfg
from engine.optim import build_lr_scheduler, build_optimizer


def optim_cfg(**kw):
    cfg = get_cfg()
    cfg.OPTIM.NAME, cfg.OPTIM.LR = "sgd", 0.002
    for k, v in kw.items():
        cfg.OPTIM[k] = v
    return cfg.OPTIM


def trace(c, epochs=None):
    p = torch.nn.Parameter(torch.zeros(1))
    opt = build_optimizer([p], c)
    sched = build_lr_scheduler(opt, c)
    out = []
    for _ in range(epochs or c.MAX_EPOCH):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out, opt, sched


def test_coop_trace_constant_warmup_then_cosine():
    """CoOp: epoch 0 at WARMUP_CONS_LR, then cosine(e-1) over MAX_EPOCH, as Dassl chains it."""
    c = optim_cfg(MAX_EPOCH=5, LR_SCHEDULER="cosine", WARMUP_EPOCH=1, WARMUP_TYPE="constant", WARMUP_CONS_LR=1e-5)
    lrs, _, _ = trace(c)
    expected = [1e-5, 0.002, 0.001 * (1 + math.cos(math.pi / 5)), 0.001 * (1 + math.cos(2 * math.pi / 5)),
                0.001 * (1 + math.cos(3 * math.pi / 5))]
    assert lrs == pytest.approx(expected, rel=1e-12)


def test_linear_warmup_and_single_step():
    c = optim_cfg(MAX_EPOCH=6, LR_SCHEDULER="single_step", STEPSIZE=(2,), GAMMA=0.1, WARMUP_EPOCH=2,
                  WARMUP_TYPE="linear", WARMUP_MIN_LR=1e-4)
    lrs, _, _ = trace(c)
    assert lrs == pytest.approx([1e-4, 0.001, 0.002, 0.002, 0.0002, 0.0002])


def test_multi_step_without_warmup():
    c = optim_cfg(MAX_EPOCH=5, LR_SCHEDULER="multi_step", STEPSIZE=(1, 3), GAMMA=0.5)
    lrs, _, _ = trace(c)
    assert lrs == pytest.approx([0.002, 0.001, 0.001, 0.0005, 0.0005])


def test_scheduler_state_round_trip_continues_the_trace():
    c = optim_cfg(MAX_EPOCH=6, LR_SCHEDULER="cosine", WARMUP_EPOCH=1, WARMUP_TYPE="constant")
    full, _, _ = trace(c)
    _, opt, sched = trace(c, epochs=3)
    p = torch.nn.Parameter(torch.zeros(1))
    opt2 = build_optimizer([p], c)
    sched2 = build_lr_scheduler(opt2, c)
    opt2.load_state_dict(opt.state_dict())
    sched2.load_state_dict(sched.state_dict())
    rest = []
    for _ in range(3):
        rest.append(opt2.param_groups[0]["lr"])
        opt2.step()
        sched2.step()
    assert rest == pytest.approx(full[3:])


@pytest.mark.parametrize("key,value,match", [
    ("NAME", "sgdd", "OPTIM.NAME: unknown optimizer 'sgdd'. Did you mean 'sgd'"),
    ("LR_SCHEDULER", "cosin", "unknown scheduler 'cosin'. Did you mean 'cosine'"),
])
def test_bad_names(key, value, match):
    c = optim_cfg(**{key: value})
    with pytest.raises(ValueError, match=match):
        trace(c, epochs=1)


def test_optimizers_take_only_trainable_params():
    m = torch.nn.Linear(2, 2)
    m.bias.requires_grad_(False)
    for name, cls in [("sgd", torch.optim.SGD), ("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW)]:
        opt = build_optimizer(m, optim_cfg(NAME=name))
        assert isinstance(opt, cls)
        assert [p for g in opt.param_groups for p in g["params"]] == [m.weight]
