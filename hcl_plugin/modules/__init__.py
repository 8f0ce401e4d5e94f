"""nn.Modules of the core (torch only): Poincaré projection head and memory banks."""

from hcl_plugin.modules.memory_bank import HyperbolicMemoryBank, MemoryBank
from hcl_plugin.modules.poincare_head import PoincareProjectionHead, ball_health_stats

__all__ = ["HyperbolicMemoryBank", "MemoryBank", "PoincareProjectionHead", "ball_health_stats"]
