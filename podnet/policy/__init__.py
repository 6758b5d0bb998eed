"""NetworkPolicy: planner.py (pure semantics), nftscript.py (the nft script),
trace.py (packet tracer, the unit tests' fake), reconciler.py (the agent's loop).
User documentation: docs/policy.md."""
