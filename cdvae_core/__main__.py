import os

# Threads that wait passively yield their core: much faster on a busy machine, about equal on an
# idle one. Must be set before torch is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from cdvae_core.cli import main  # noqa: E402

raise SystemExit(main())
