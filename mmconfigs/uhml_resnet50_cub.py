# Deprecated name of the config mmconfigs/uhml_resnet50_1xb128-adam-50e_cub.py (configs now follow OpenMMLab's
# {algorithm}_{backbone}_{gpus}xb{batch}-{schedule}_{dataset} pattern; CHANGELOG.md lists old -> new).
# Kept for one release; tools/train.py warns when a config uses it.
_base_ = ['./uhml_resnet50_1xb128-adam-50e_cub.py']
deprecated_config_name = 'mmconfigs/uhml_resnet50_cub.py -> mmconfigs/uhml_resnet50_1xb128-adam-50e_cub.py'
