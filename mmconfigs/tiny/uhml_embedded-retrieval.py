# Deprecated name of the config mmconfigs/tiny/uhml_resnet18_1xb32-adam-3e_embedded-retrieval.py (configs now follow OpenMMLab's
# {algorithm}_{backbone}_{gpus}xb{batch}-{schedule}_{dataset} pattern; CHANGELOG.md lists old -> new).
# Kept for one release; tools/train.py warns when a config uses it.
_base_ = ['./uhml_resnet18_1xb32-adam-3e_embedded-retrieval.py']
deprecated_config_name = 'mmconfigs/tiny/uhml_embedded-retrieval.py -> mmconfigs/tiny/uhml_resnet18_1xb32-adam-3e_embedded-retrieval.py'
