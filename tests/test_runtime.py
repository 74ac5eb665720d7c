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


def test_compiled_falls_back_to_eager_with_a_warning(monkeypatch, caplog):
    from vitscope import runtime

    def broken_compile(fn):
        def call(*a, **k):
            raise RuntimeError("InductorError: no working C++ compiler found\ndetails")
        return call

    monkeypatch.setattr(runtime.torch, "compile", broken_compile)
    calls = []

    def double(x):
        calls.append(x)
        if x < 0:
            raise ValueError("negative")
        return 2 * x

    f = runtime.compiled(double)
    with caplog.at_level("WARNING", logger="vitscope.runtime"):
        assert f(3) == 6 and f(4) == 8
    assert calls == [3, 4]  # eager once compiling failed, no second compile attempt
    mine = [r.getMessage() for r in caplog.records if r.name == "vitscope.runtime"]
    assert len(mine) == 1 and "no working C++ compiler" in mine[0]
    with pytest.raises(ValueError, match="negative"):  # an error of the function itself still raises
        f(-1)
    assert runtime.compiled(double, enabled=False) is double


def test_compiled_error_of_the_function_itself_is_not_a_compile_failure(monkeypatch, caplog):
    from vitscope import runtime

    monkeypatch.setattr(runtime.torch, "compile", lambda fn: fn)  # "compiled" = the function itself

    def check(x):
        if x < 0:
            raise ValueError("negative")
        return x

    f = runtime.compiled(check)
    with caplog.at_level("WARNING", logger="vitscope.runtime"), pytest.raises(ValueError, match="negative"):
        f(-1)
    assert not [r for r in caplog.records if r.name == "vitscope.runtime"] and f(2) == 2


def test_stop_signals_are_recorded_only_inside_a_deferred_stop_block():
    import signal

    from vitscope.stopping import defer_stop, deferred_stop

    assert not defer_stop(signal.SIGTERM)  # no resumable loop runs: the command line ends the run
    with deferred_stop() as stop_signal:
        assert stop_signal() == 0
        assert defer_stop(signal.SIGUSR1) and defer_stop(signal.SIGTERM)
        assert stop_signal() == signal.SIGUSR1  # the first one is kept
    with deferred_stop() as stop_signal:
        assert stop_signal() == 0  # a new block starts clean
