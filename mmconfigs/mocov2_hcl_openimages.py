# Deprecated name of the config mmconfigs/mocov2-hcl_resnet50_8xb32-coslr-200e_openimages.py (configs now follow OpenMMLab's
# {algorithm}_{backbone}_{gpus}xb{batch}-{schedule}_{dataset} pattern; CHANGELOG.md lists old -> new).
# Kept for one release; tools/train.py warns when a config uses it.
_base_ = ['./mocov2-hcl_resnet50_8xb32-coslr-200e_openimages.py']
deprecated_config_name = 'mmconfigs/mocov2_hcl_openimages.py -> mmconfigs/mocov2-hcl_resnet50_8xb32-coslr-200e_openimages.py'
