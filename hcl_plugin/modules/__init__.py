"""nn.Modules of the core (torch only): the ball-projection base and the Poincaré head, memory banks."""

from hcl_plugin.modules.memory_bank import HyperbolicMemoryBank, MemoryBank
from hcl_plugin.modules.poincare_head import BallProjection, PoincareProjectionHead, ball_health_stats

__all__ = ["BallProjection", "HyperbolicMemoryBank", "MemoryBank", "PoincareProjectionHead", "ball_health_stats"]
