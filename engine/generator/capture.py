"""Whether torch is capturing the renderer as a graph (an ONNX export's trace, torch.compile) rather than running it.

The renderer skips work by its data's values (a window in which nothing blinks or smiles, a mouth crop to the rows
that open). A captured graph must hold for every value, and torch.compile's would break or be compiled again on each
new size, so those shortcuts are off while this is true.
"""

from __future__ import annotations

import torch


def capturing_graph() -> bool:
    return torch.jit.is_tracing() or torch.compiler.is_compiling()
