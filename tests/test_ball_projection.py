"""One ball-projection base: the Poincaré head (MLP) and UHML's linear projection differ only in g."""

from __future__ import annotations

import torch

from hcl_plugin.uhml import LinearBallProjection
from hcl_plugin.geometry import clip_features, expmap0
from hcl_plugin.modules import BallMap, BallProjection, PoincareProjectionHead


def test_both_heads_are_the_base_with_their_own_euclidean_map(gen):
    features = torch.randn(6, 16, generator=gen)
    heads = [PoincareProjectionHead(16, 8, 4, c=0.5, clip_r=1.5, feature_scale=0.3, learn_scale=True),
             LinearBallProjection(16, 4, c=0.5, clip_r=1.5, feature_scale=0.3, learn_scale=True)]
    for head in heads:
        assert isinstance(head, BallProjection)
        expected = expmap0(clip_features(head.euclidean(features) * 0.3, 1.5), 0.5)
        assert torch.allclose(head(features), expected, atol=1e-6), type(head).__name__
        assert set(head.stats) == {"clipped_fraction", "hyp_norm_mean", "hyp_norm_min", "hyp_norm_max", "feature_scale",
                                   "two_over_sqrt_c", "c_sq_norm_mean", "c_sq_norm_max", "near_boundary_fraction"}
        assert torch.allclose(head.stats["feature_scale"], torch.tensor(0.3))
        assert isinstance(head.log_scale, torch.nn.Parameter) and head.c == 0.5
    linear = heads[1]
    assert torch.allclose(linear.project(features), linear(features)) and torch.allclose(
        linear.tangent_of(features), linear.to_tangent(features))


def test_uhml_embedding_runs_the_backbone_once_before_the_linear_map(gen):
    from hcl_plugin.uhml import UHMLEmbedding

    net = UHMLEmbedding("resnet18", dim=8, c=1.0).eval()
    images = torch.rand(2, 3, 32, 32, generator=gen)
    features = net.backbone(images)
    assert torch.allclose(net.to_tangent(images), net.tangent_of(features), atol=1e-6)
    assert torch.allclose(net(images), net.project(features), atol=1e-6)


def test_the_ball_map_is_the_base_with_the_identity(gen):
    """BallMap (the shared head's map) is the same tail as the heads: scale, clip, expmap0, stats."""
    raw = torch.randn(6, 16, generator=gen) * 5
    ball_map = BallMap(c=0.5, clip_r=1.5, feature_scale=0.3, learn_scale=True)
    assert isinstance(ball_map, BallProjection) and torch.equal(ball_map.euclidean(raw), raw)
    assert torch.allclose(ball_map(raw), expmap0(clip_features(raw * 0.3, 1.5), 0.5), atol=1e-6)
    assert set(ball_map.state_dict()) == {"log_scale"}
    assert float(ball_map.stats["clipped_fraction"]) == 1.0 and "c_sq_norm_max" in ball_map.stats
