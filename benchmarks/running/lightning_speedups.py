"""Two costs Lightning adds to every training step, removed for the harness's runs (measured by
``benchmarks/perf/harness_overhead.py``; the profile and the figures are in README's "Performance").

1. ``self.log`` in a training step walks the whole logged-metric object each step to move it to the value's device
   (``_ResultMetric.to`` → ``apply_to_collection``, deep-copying its metadata dataclass), also when it is on that
   device already: about 0.3 ms a step on this CPU. ``skip_needless_metric_moves`` returns early in exactly that case,
   as Lightning's open pull request #21769 (issue #20388) does; any other move or cast takes Lightning's own path.
2. Every hook Lightning calls is wrapped in ``trainer.profiler.profile(...)``, a generator context manager even when
   nothing is profiled (``PassThroughProfiler``). ``NoProfiler`` hands back one shared ``nullcontext`` instead.
3. About 25 hook calls a step go through ``lightning.pytorch.trainer.call``, and each one formats a debug message,
   sets the module's ``_current_fx_name`` twice through ``nn.Module.__setattr__`` (its checks for parameters,
   buffers and submodules; a string is none of them) and, for callbacks, calls every callback's every hook, the
   ``Callback`` base class's empty ones included. ``lean_hook_calls`` puts in versions that do the same calls in the
   same order, less those three costs. They are copies of Lightning's functions, so they are installed only on the
   Lightning version they were read from (``LIGHTNING``); on any other the harness runs Lightning's own, and
   ``tests/test_speedups.py`` fails until someone reads the new version's functions and updates the copies.

4. ``self.log`` and the training loop read the training step's signature with ``inspect`` every step (to find
   ``batch_idx`` or ``dataloader_iter``). ``remembered_signatures`` keeps each answer per function: a function's
   signature does not change.

None changes what is computed or logged: ``tests/test_speedups.py`` checks that a run's logged values, checkpoints
and trained weights are the same with and without them.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import logging
from typing import Any

import lightning
import torch
from lightning.pytorch import Callback
from lightning.pytorch.callbacks import Checkpoint, EarlyStopping
from lightning.pytorch.profilers import PassThroughProfiler
from lightning.pytorch.trainer import call
from lightning.pytorch.trainer.connectors.logger_connector.result import _ResultMetric
from lightning.pytorch.utilities import signature_utils

LIGHTNING = "2.6.6"  # the version whose trainer/call.py the lean hook calls below were copied from

_lightning_to = _ResultMetric.to
_NULL = contextlib.nullcontext()


def _to_unless_there(self: _ResultMetric, *args: Any, **kwargs: Any) -> _ResultMetric:
    """``_ResultMetric.to`` that does nothing for ``.to(device)`` when the metric's value is on that device."""
    if not kwargs and len(args) == 1 and isinstance(args[0], torch.device | str):
        value = self.__dict__.get("value")
        if isinstance(value, torch.Tensor) and value.device == torch.device(args[0]):
            cumulated = self.__dict__.get("cumulated_batch_size")
            if not isinstance(cumulated, torch.Tensor) or cumulated.device == value.device:
                return self
    return _lightning_to(self, *args, **kwargs)


def skip_needless_metric_moves(enabled: bool = True) -> None:
    """Install the early return (idempotent), or put Lightning's own method back (``enabled=False``, for the
    measurements that compare the two)."""
    _ResultMetric.to = _to_unless_there if enabled else _lightning_to


class NoProfiler(PassThroughProfiler):
    """Lightning's do-nothing profiler, without building a context manager per hook call."""

    def profile(self, action_name: str) -> contextlib.nullcontext:
        return _NULL


# --- 3. lean hook calls ---------------------------------------------------------------------------------------------
_LIGHTNING_CALLS = {name: getattr(call, name) for name in
                    ("_call_lightning_module_hook", "_call_callback_hooks", "_call_strategy_hook")}  # fmt: skip
_set = object.__setattr__  # what nn.Module.__setattr__ ends in for a value that is no parameter, buffer or module


def _profile(trainer, name: str):
    """Lightning's ``trainer.profiler.profile(name)``, without formatting the name when nothing is profiled."""
    profiler = trainer.profiler
    return _NULL if isinstance(profiler, NoProfiler) else profiler.profile(name())


def _module_hook(trainer, hook_name: str, *args: Any, pl_module=None, **kwargs: Any) -> Any:
    if call.log.isEnabledFor(logging.DEBUG):
        call.log.debug(f"{trainer.__class__.__name__}: calling lightning module hook: {hook_name}")
    pl_module = pl_module or trainer.lightning_module
    if pl_module is None:
        raise TypeError("No `LightningModule` is available to call hooks on.")
    fn = getattr(pl_module, hook_name)
    if not callable(fn):
        return None
    prev_fx_name = pl_module._current_fx_name
    _set(pl_module, "_current_fx_name", hook_name)
    with _profile(trainer, lambda: f"[LightningModule]{pl_module.__class__.__name__}.{hook_name}"):
        output = fn(*args, **kwargs)
    _set(pl_module, "_current_fx_name", prev_fx_name)
    return output


def _callback_hooks(trainer, hook_name: str, *args: Any, monitoring_callbacks: bool | None = None, **kwargs: Any):
    if call.log.isEnabledFor(logging.DEBUG):
        call.log.debug(f"{trainer.__class__.__name__}: calling callback hook: {hook_name}")
    pl_module = trainer.lightning_module
    if pl_module:
        prev_fx_name = pl_module._current_fx_name
        _set(pl_module, "_current_fx_name", hook_name)
    callbacks = trainer.callbacks
    if monitoring_callbacks is True:
        callbacks = [cb for cb in callbacks if isinstance(cb, EarlyStopping | Checkpoint)]
    elif monitoring_callbacks is False:
        callbacks = [cb for cb in callbacks if not isinstance(cb, EarlyStopping | Checkpoint)]
    empty = getattr(Callback, hook_name, None)  # the base class's hook, which does nothing
    for callback in callbacks:
        fn = getattr(callback, hook_name)
        if callable(fn) and getattr(fn, "__func__", None) is not empty:
            with _profile(trainer, lambda: f"[Callback]{callback.state_key}.{hook_name}"):  # noqa: B023 (used at once)
                fn(trainer, trainer.lightning_module, *args, **kwargs)
    if pl_module:
        _set(pl_module, "_current_fx_name", prev_fx_name)


def _strategy_hook(trainer, hook_name: str, *args: Any, **kwargs: Any) -> Any:
    if call.log.isEnabledFor(logging.DEBUG):
        call.log.debug(f"{trainer.__class__.__name__}: calling strategy hook: {hook_name}")
    pl_module = trainer.lightning_module
    prev_fx_name = pl_module._current_fx_name
    _set(pl_module, "_current_fx_name", hook_name)
    fn = getattr(trainer.strategy, hook_name)
    if not callable(fn):
        return None
    with _profile(trainer, lambda: f"[Strategy]{trainer.strategy.__class__.__name__}.{hook_name}"):
        output = fn(*args, **kwargs)
    _set(pl_module, "_current_fx_name", prev_fx_name)
    return output


_LEAN_CALLS = {"_call_lightning_module_hook": _module_hook, "_call_callback_hooks": _callback_hooks,
               "_call_strategy_hook": _strategy_hook}  # fmt: skip


def lean_hook_calls(enabled: bool = True) -> bool:
    """Install the lean hook calls when this is the Lightning they were copied from (or put Lightning's back);
    returns whether the lean ones are in place."""
    lean = enabled and lightning.__version__ == LIGHTNING
    for name, fn in (_LEAN_CALLS if lean else _LIGHTNING_CALLS).items():
        setattr(call, name, fn)
    return lean


# --- 4. remembered signatures --------------------------------------------------------------------------------------
# the per-step callers, each with its own import of the function
_SIGNATURE_USERS = ("lightning.pytorch.core.module", "lightning.pytorch.loops.training_epoch_loop",
                    "lightning.pytorch.loops.evaluation_loop")  # fmt: skip


@functools.lru_cache(maxsize=256)
def _in_signature(fn, param: str, explicit: bool, min_args: int | None) -> bool:
    return signature_utils.is_param_in_hook_signature(fn, param, explicit, min_args)


def _remembered(hook_fx, param: str, explicit: bool = False, min_args: int | None = None) -> bool:
    fn = getattr(hook_fx, "__func__", hook_fx)  # a bound method is new at each access; its function is not (and
    try:  # has the same arguments: getfullargspec lists a bound method's self too, and Lightning drops the first)
        return _in_signature(fn, param, explicit, min_args)
    except TypeError:  # an unhashable callable
        return signature_utils.is_param_in_hook_signature(hook_fx, param, explicit, min_args)


def remembered_signatures(enabled: bool = True) -> None:
    for name in _SIGNATURE_USERS:
        module = importlib.import_module(name)
        module.is_param_in_hook_signature = _remembered if enabled else signature_utils.is_param_in_hook_signature


def install(enabled: bool = True) -> bool:
    """All of the above that patch Lightning (the profiler is a Trainer argument); returns whether the hook calls are
    the lean ones."""
    skip_needless_metric_moves(enabled)
    remembered_signatures(enabled)
    return lean_hook_calls(enabled)
