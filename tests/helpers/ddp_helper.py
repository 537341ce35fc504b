"""Run under `torchrun --nproc-per-node 2` by tests/training/test_distributed.py (not a test module).

Usage: python -m torch.distributed.run ... tests/helpers/ddp_helper.py DATASET RESULTS_DIR OUT_DIR

Each rank writes OUT_DIR/rank{R}.pt with:
- "unit": one optimizer step of a tiny MLP with DIFFERENT data per rank, using astrogan's helpers
  (broadcast_module, all_reduce_grads): the local gradients before averaging, the gradients after
  averaging, the reference gradients of the same model on the combined batch of both ranks, and the
  parameters after one SGD step;
- "loop": the parameters of G, D and G_ema at the last step of a tiny 2-process `train()` run (taken in
  a step callback, which every rank runs).
The test compares these across ranks; nothing is asserted here.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import torch
from torch import nn

from astrogan.config import TrainConfig
from astrogan.training import distributed as dist_utils
from astrogan.training.loop import train

NUM_UNIT_ROWS = 5


def _unit_data(rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1000 + rank)
    return torch.randn(NUM_UNIT_ROWS, 3, generator=gen), torch.randn(NUM_UNIT_ROWS, 1, generator=gen)


def _unit_step(info: dist_utils.DistInfo) -> dict[str, list[torch.Tensor]]:
    torch.manual_seed(17 + info.rank)  # different init per rank: broadcast_module must unify it
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1))
    dist_utils.broadcast_module(model, info)
    reference = copy.deepcopy(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)

    x, y = _unit_data(info.rank)
    nn.functional.mse_loss(model(x), y).backward()
    local = [p.grad.clone() for p in model.parameters()]
    dist_utils.all_reduce_grads(model, info)
    averaged = [p.grad.clone() for p in model.parameters()]
    opt.step()

    # Equal batch sizes per rank: the mean of the per-rank mean losses is the mean over the combined batch.
    parts = [_unit_data(r) for r in range(info.world_size)]
    xs, ys = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
    nn.functional.mse_loss(reference(xs), ys).backward()
    return {
        "local_grads": local,
        "averaged_grads": averaged,
        "reference_grads": [p.grad.clone() for p in reference.parameters()],
        "params_after": [p.detach().clone() for p in model.parameters()],
    }


def main() -> None:
    dataset, results_dir, out_dir = sys.argv[1:4]
    info = dist_utils.init_from_env("cpu")
    assert info.world_size == 2, info
    out: dict[str, object] = {"rank": info.rank, "unit": _unit_step(info)}

    cfg = TrainConfig(
        data=dataset,
        arch="dcgan",
        image_size=16,
        batch_size=8,
        num_train_steps=3,
        save_every=3,
        evaluate_every=3,
        results_dir=results_dir,
        name="sync",
        num_snapshot_seeds=4,
        model={"ngf": 8, "ndf": 8},
        device="cpu",
    )

    def grab(step: int, ctx: dict) -> None:
        if step == cfg.num_train_steps:
            out["loop"] = {
                name: {k: v.detach().clone() for k, v in ctx[name].named_parameters()}
                for name in ("G", "D", "G_ema")
            }

    train(cfg, callbacks=[grab], show_progress=False)  # also tears the process group down
    torch.save(out, Path(out_dir) / f"rank{info.rank}.pt")


if __name__ == "__main__":
    main()
