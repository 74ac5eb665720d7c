"""Pretraining ViTs with MoCo v3, DINO, SimMIM, MAE and the CL + MIM hybrid (see docs/pretrain.md).

:mod:`vitscope.train.config` holds the settings (light: the command line reads them before torch is
imported), :mod:`vitscope.train.engine` the training loop."""
