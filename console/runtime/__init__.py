"""Running a rollout, whatever front end watches it.

``session`` is the one place that turns a spec, its hosts, its plan, the lock and the
journal into an :class:`~console.engine.Engine` (``run``, ``demo``, ``drill``,
``resume``, tests and bench scripts all go through it); ``engine_thread`` runs that
engine on its own thread and loop for the Textual console. Neither imports Textual:
``console.app`` wires them to the screens.

Nothing is imported here, so ``console.app`` can take the engine thread without
loading the engine, the transport and SSH through the session module.
"""
