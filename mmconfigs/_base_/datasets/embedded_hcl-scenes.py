# The embedded Animal-MNIST scene set (CPU-scale proxy for COCO), built once with
#   python -m hcl_plugin.data.embedded.scenes --out data/embedded
# (`make demo` builds the same set). 256 px scenes, 2-5 animals each, exact boxes; the COCO pipelines
# of coco_hcl-scenes.py with smaller crops and 64 px views, so a few hundred iterations run in
# minutes on a CPU.
_base_ = ['./coco_hcl-scenes.py']

data_root = 'data/embedded/'
input_size = 64
hyperbolic_size = None  # side of the hyperbolic views; None = input_size (see coco_hcl-scenes.py)
# what differs from the COCO pipelines, by transform type: the view size (set by the first step of
# each view pipeline; hyperbolic_size, when set, replaces the hyperbolic views' one) and the box rules (animals in 256 px scenes are small: the official 56 px rule
# keeps ~65 % of them, docs/data.md)
pipeline_overrides = {
    'RandomResizedCrop': dict(size=input_size),
    'Resize': dict(scale=(input_size, input_size)),
    'SampleSceneObjectBoxes': dict(min_box_size=24, expand_to=96),
    'SceneObjectMultiView': dict(hyperbolic_size=hyperbolic_size),
}


def _override(step):
    """``step`` of a COCO pipeline with ``pipeline_overrides`` applied, its view pipelines included."""
    step = dict(step, **pipeline_overrides.get(step['type'], {}))
    for key in ('object_transforms', 'scene_transforms'):
        if key in step:
            step[key] = [_override(view_step) for view_step in step[key]]
    return step


object_view_pipeline = [_override(step) for step in _base_.object_view_pipeline]
scene_view_pipeline = [_override(step) for step in _base_.scene_view_pipeline]
box_sampler = _override(_base_.box_sampler)
train_pipeline = [_override(step) for step in _base_.train_pipeline]
baseline_pipeline = [_override(step) for step in _base_.baseline_pipeline]
train_dataloader = dict(
    batch_size=16,
    num_workers=2,
    persistent_workers=False,
    dataset=dict(
        data_root=data_root,
        ann_file='annotations_train.json',
        ann_format='coco',
        data_prefix=dict(img_path='images/'),
        pipeline=train_pipeline))
