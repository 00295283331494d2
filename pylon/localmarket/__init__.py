"""A whole local market as real processes (relay, mint, buyer, N nodes): the runner behind
`pylon up`, `pylon demo`, the integration tests and the benchmarks. Not a command itself."""
