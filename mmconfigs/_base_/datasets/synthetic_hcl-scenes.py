# Deprecated name of the base file mmconfigs/_base_/datasets/embedded_hcl-scenes.py (configs now follow OpenMMLab's
# {algorithm}_{backbone}_{gpus}xb{batch}-{schedule}_{dataset} pattern; CHANGELOG.md lists old -> new).
# Kept for one release; tools/train.py warns when a config uses it.
_base_ = ['./embedded_hcl-scenes.py']
deprecated_config_name = 'mmconfigs/_base_/datasets/synthetic_hcl-scenes.py -> mmconfigs/_base_/datasets/embedded_hcl-scenes.py'
