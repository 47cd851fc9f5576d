"""The rollout engine: ``Engine`` runs one rollout; see :mod:`console.engine.core`.

Split by concern: ``core`` (the state machine: batches, gates, budget, rollback),
``hostwork`` (one host's steps and health gating), ``preflight``, ``commands`` (what
each operator command does), ``control`` (flags, host records, budget) and
``emitter`` (journal first, then the bus).
"""

from console.engine.core import POLICY, Engine, new_rollout_id, spec_hash

__all__ = ["POLICY", "Engine", "new_rollout_id", "spec_hash"]
