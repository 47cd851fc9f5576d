"""The strategy a spec names (``strategy:``), as the engine's :class:`Strategy`.

One line per strategy: a new one is a new module implementing
:class:`~console.engine.strategy.Strategy` and one entry here.
"""

from __future__ import annotations

from console.engine.blue_green import BlueGreen
from console.engine.rolling import RollingStrategy
from console.engine.strategy import Strategy
from console.engine.weighted_canary import WeightedCanary
from console.spec import RolloutSpec


def strategy_for(spec: RolloutSpec) -> Strategy:
    """rolling; canary with ``traffic:`` weighs the canary through HAProxy (without, a
    canary is the plan's first batch, rolled as rolling); blue-green switches pools."""
    if spec.strategy == "blue-green":
        return BlueGreen(spec)
    if spec.strategy == "canary" and spec.traffic:
        return WeightedCanary(spec)
    return RollingStrategy()
