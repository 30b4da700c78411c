"""Base of the fused attention modules: a stand-in that shares the wrapped module's state."""

from __future__ import annotations

from torch import nn


class FusedAttention(nn.Module):
    """Stands in for an attention module and shares its parameter, buffer and submodule dicts, so
    state dicts keep their keys, ``.to()`` / ``.half()`` / training reach the original too, and
    :meth:`restore` hands back the very same module, in step with everything done meanwhile."""

    def __init__(self, original: nn.Module) -> None:
        super().__init__()
        self.__dict__.update(
            _parameters=original._parameters,
            _buffers=original._buffers,
            _non_persistent_buffers_set=original._non_persistent_buffers_set,
            _modules=original._modules,
            original=original,  # a plain attribute: not a submodule, so not visited twice
            training=original.training,
        )

    def restore(self) -> nn.Module:
        """The original module, switched to this wrapper's train / eval mode (which also refreshes
        any bias the original caches in eval mode)."""
        self.original.train(self.training)
        return self.original
