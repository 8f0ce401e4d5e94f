# ORL stage 3 + HCL: orl.py plus the hyperbolic branch of hcl_branch.py (lambda 0.1, c 0.05 fixed,
# tau 0.2): the whole image (scene) through the online backbone against one of its proposals (object,
# the intra-RoI box) through the target backbone, with a queue of 65536 object keys (BYOL has no
# queue of its own; hyp_queue_len sets it).
_base_ = ['./orl.py', './hcl_branch.py']

model = dict(type='HCLORL', hyp_queue_len=65536, **_base_.hcl_branch)
