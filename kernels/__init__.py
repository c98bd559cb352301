"""Hot per-pixel kernels. Each has a torch reference (the CPU path and the test oracle)."""
