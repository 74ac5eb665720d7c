"""Pretraining ViTs with MoCo v3, SimMIM, MAE and the CL + MIM hybrid (see docs/pretrain.md)."""

from vitscope.train.config import PretrainConfig, resolve
from vitscope.train.engine import train

__all__ = ["PretrainConfig", "resolve", "train"]
