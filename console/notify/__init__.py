"""Hooks and notifications (``notify:``): the rollout's events told to the team.

The engine knows nothing of them. A :class:`~console.notify.notifier.Notifier` listens
on the engine's bus, which hands it each event only after the journal has it, and
delivers on threads of its own, each hook with a bounded queue, a timeout per attempt
and bounded retries: a slow or dead receiver delays no batch and no rollback and
changes no outcome. Every delivery and failure is journaled (``NotifyDelivery``).
"""

from console.notify.names import hook_label, names_of
from console.notify.notifier import Notifier, attach_notifier

__all__ = ["Notifier", "attach_notifier", "hook_label", "names_of"]
