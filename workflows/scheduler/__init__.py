"""The scheduler: the consumer loop, the unit of work, applying the core's decisions to rows, the
effects sent after commit, the reconciler and the heartbeat."""
