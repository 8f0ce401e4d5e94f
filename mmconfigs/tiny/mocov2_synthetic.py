# Deprecated name of the config mmconfigs/tiny/mocov2_resnet18_1xb16-coslr-300it_embedded.py (configs now follow OpenMMLab's
# {algorithm}_{backbone}_{gpus}xb{batch}-{schedule}_{dataset} pattern; CHANGELOG.md lists old -> new).
# Kept for one release; tools/train.py warns when a config uses it.
_base_ = ['./mocov2_resnet18_1xb16-coslr-300it_embedded.py']
deprecated_config_name = 'mmconfigs/tiny/mocov2_synthetic.py -> mmconfigs/tiny/mocov2_resnet18_1xb16-coslr-300it_embedded.py'
