import pytest
import torch

from vitscope.errors import VitscopeError
from vitscope.runtime import autocast, resolve_device, shard, shard_batches


def test_shard_is_disjoint_and_complete():
    ds = list(range(11))
    parts = [list(shard(ds, r, 3)) for r in range(3)]
    assert sorted(sum(parts, [])) == ds and parts[0] == [0, 3, 6, 9]


def test_shard_batches_deals_whole_batches():
    ds = list(range(11))  # batches of 4: [0..3] [4..7] [8..10]
    assert list(shard_batches(ds, 4, 0, 2)) == [0, 1, 2, 3, 8, 9, 10]
    assert list(shard_batches(ds, 4, 1, 2)) == [4, 5, 6, 7]
    assert shard_batches(ds, 4, 0, 1) is ds


def test_device_and_precision_errors():
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(VitscopeError, match="unknown device"):
        resolve_device("tpu9")
    with pytest.raises(VitscopeError, match="Valid options"):
        autocast(torch.device("cpu"), "fp8")
