"""Projection heads in Lightly's conventions."""

from hcl_plugin.modules.poincare_head import PoincareProjectionHead

# ``PoincareProjectionHead(input_dim, hidden_dim, output_dim, c, clip_r, feature_scale, learn_scale,
# batch_norm)`` already has the signature of Lightly's ``MoCoProjectionHead(input_dim, hidden_dim,
# output_dim)``: a Linear-ReLU-Linear MLP followed by the map onto the Poincaré ball. It is the same
# class as ``hcl_plugin.modules.PoincareProjectionHead`` so checkpoints are interchangeable.
__all__ = ["PoincareProjectionHead"]
