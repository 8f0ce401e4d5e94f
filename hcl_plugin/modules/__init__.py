"""nn.Modules of the core (torch only): the ball-projection base, the Poincaré head and the ball map, memory banks."""

from hcl_plugin.modules.ball_map import BallMap
from hcl_plugin.modules.memory_bank import HyperbolicMemoryBank, MemoryBank
from hcl_plugin.modules.poincare_head import BallProjection, PoincareProjectionHead, ball_health_stats

__all__ = ["BallMap", "BallProjection", "HyperbolicMemoryBank", "MemoryBank", "PoincareProjectionHead",
           "ball_health_stats"]
