# Deprecated name of the config mmconfigs/mmdet/tiny/mask-rcnn_r18_fpn_embedded_hcl.py (configs now follow OpenMMLab's
# {algorithm}_{backbone}_{gpus}xb{batch}-{schedule}_{dataset} pattern; CHANGELOG.md lists old -> new).
# Kept for one release; tools/train.py warns when a config uses it.
_base_ = ['./mask-rcnn_r18_fpn_embedded_hcl.py']
deprecated_config_name = 'mmconfigs/mmdet/tiny/mask-rcnn_r18_fpn_synthetic_hcl.py -> mmconfigs/mmdet/tiny/mask-rcnn_r18_fpn_embedded_hcl.py'
