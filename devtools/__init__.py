"""Development tools: test stacks, soaks, benchmarks, the invocation ledger; never installed in production."""
