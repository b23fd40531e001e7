"""hardenkit's benchmarks: every figure a ratio against a peer measured in the same run."""
