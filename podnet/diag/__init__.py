"""Diagnostics: `podnet trace` (a real probe followed through the kernel's
nftables trace events and routing lookups) and `podnet doctor` (the
troubleshooting checklist, root cause first). Both read the kernel and the
API, never podnet's own memory of what it did."""
