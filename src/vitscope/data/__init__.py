"""Data sets, preprocessing and loaders."""

from vitscope.data.images import Batch, SkipLog, iterate, make_loader, open_dataset, subset
from vitscope.data.transforms import model_transform

__all__ = ["Batch", "SkipLog", "iterate", "make_loader", "model_transform", "open_dataset", "subset"]
