"""The rollout engine: ``Engine`` runs one rollout; see :mod:`console.engine.core`.

Split by concern: ``core`` (the runner: host tasks in batches, budget, monitors,
commands applied), ``strategy`` (the ``Strategy`` protocol: the order of batches, the
gates between, when to stop, how to roll back; and the ``StrategyContext`` it drives
the engine through), ``rolling`` (today's rolling rollout, the default strategy),
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
from console.engine.rolling import RollingStrategy
from console.engine.strategy import Strategy, StrategyContext, Verdict

__all__ = [
    "POLICY",
    "Engine",
    "HostRestore",
    "RestorePoint",
    "RollingStrategy",
    "Strategy",
    "StrategyContext",
    "Verdict",
    "new_rollout_id",
    "spec_hash",
]
