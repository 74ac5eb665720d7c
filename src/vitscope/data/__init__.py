"""Data sets, preprocessing and loaders."""

from vitscope.data.images import Batch, SkipLog, iterate, make_loader, open_dataset, subset
from vitscope.data.sources import DataSource, describe_data, open_data
from vitscope.data.transforms import model_transform

__all__ = ["Batch", "DataSource", "SkipLog", "describe_data", "iterate", "make_loader", "model_transform",
           "open_data", "open_dataset", "subset"]
