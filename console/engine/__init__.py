"""The rollout engine: ``Engine`` runs one rollout; see :mod:`console.engine.core`.

Split by concern: ``core`` (the runner: batches, gates, budget, rollback),
``machine`` (the phases, their legal transitions and the one derivation of the phase
from the flags: pure), ``context`` (the narrow API ``commands``, ``gates`` and
``preflight`` see instead of ``Engine``, and the ``RestorePoint`` a resumed rollout
starts from), ``batches`` (the plan as it runs), ``hostwork`` (one host's steps and
health gating), ``preflight``, ``commands`` (what each operator command does),
``control`` (flags, host records, budget) and ``emitter`` (journal first, then the
bus). Nothing here imports ``console.resume``: it builds a ``RestorePoint``.
"""

from console.engine.context import HostRestore, RestorePoint
from console.engine.core import POLICY, Engine, new_rollout_id, spec_hash

__all__ = ["POLICY", "Engine", "HostRestore", "RestorePoint", "new_rollout_id", "spec_hash"]
