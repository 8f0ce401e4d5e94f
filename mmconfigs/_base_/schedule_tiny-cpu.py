# Deprecated name of the base file mmconfigs/_base_/schedules/sgd_coslr-300it.py (configs now follow OpenMMLab's
# {algorithm}_{backbone}_{gpus}xb{batch}-{schedule}_{dataset} pattern; CHANGELOG.md lists old -> new).
# Kept for one release; tools/train.py warns when a config uses it.
_base_ = ['./schedules/sgd_coslr-300it.py']
deprecated_config_name = 'mmconfigs/_base_/schedule_tiny-cpu.py -> mmconfigs/_base_/schedules/sgd_coslr-300it.py'
