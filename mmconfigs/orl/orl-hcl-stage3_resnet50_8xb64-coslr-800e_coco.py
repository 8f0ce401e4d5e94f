# ORL stage 3 + HCL on COCO train2017 (the paper's ORL + HCL row): orl-stage3 plus lambda * L_hyp of
# the whole image (scene) and one of its proposals (object) on the Poincare ball (hcl_orl.py).
#   tools/dist_train.sh mmconfigs/orl/orl-hcl-stage3_resnet50_8xb64-coslr-800e_coco.py 8
_base_ = [
    '../_base_/models/hcl_orl.py',
    '../_base_/datasets/coco_orl-stage3.py',
    '../_base_/schedules/sgd_coslr-800e.py',
]
train_dataloader = dict(dataset=dict(pipeline=_base_.hcl_train_pipeline))
