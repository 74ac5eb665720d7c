"""Run by ``torchrun`` from test_ddp.py: a few pretraining steps that record, after each step,
the loss averaged over processes and the gradients the optimiser applied (DDP's average)."""

import json
import sys

import torch

from vitscope.train.config import PretrainConfig, apply_overrides, resolve
from vitscope.train.distributed import mean_over_processes, setup, teardown
from vitscope.train.engine import Trainer, _seed_all
from vitscope.train.gpu_data import open_training_images


def main(config: str, out: str) -> None:
    cfg = resolve(apply_overrides(PretrainConfig(), json.loads(config), "the test"))
    d = setup(cfg.device)
    _seed_all(cfg.seed)
    trainer = Trainer(cfg, d)
    data = open_training_images(cfg.data, d.device, batch_size=cfg.batch_size, rank=d.rank, world=d.world,
                                seed=cfg.seed, num_images=None, on_device="yes", load_size=32, workers=0)
    steps = []
    for step, images in enumerate(data.epoch(0)):
        outputs, _ = trainer.step(images, step, data.steps_per_epoch)
        grads = {n: p.grad.detach().clone() for n, p in trainer.objective.named_parameters() if p.grad is not None}
        steps.append({"loss": float(mean_over_processes(outputs["loss"])), "grads": grads})
    if d.main:
        weights = {n: p.detach().clone() for n, p in trainer.objective.named_parameters()}
        torch.save({"steps": steps, "weights": weights, "lr": [g["lr"] for g in trainer.optimizer.param_groups]}, out)
    teardown()  # rank 1 must not exit while rank 0 still writes (it aborted once under load)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
