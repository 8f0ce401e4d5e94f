"""Builders and downloaders of the embedded data sets (framework-free; nothing is imported eagerly).

* ``animal_mnist``: the Animal-MNIST object images (fetched wheel, checked, numpy-only unpickling);
* ``contexts``: the scene contexts (which ``skimage.data`` backgrounds and which animals go together);
* ``scenes``: the embedded multi-object scene set in COCO format
  (``python -m hcl_plugin.data.embedded.scenes --out DIR``);
* ``retrieval``: Animal-MNIST written into class folders (UHML's default retrieval set);
* ``clipart``: the class-disjoint clip-art retrieval set (Debian ``openclipart-png``; UHML benchmark).

The pipeline (boxes, box sampler, views, readers) is in :mod:`hcl_plugin.data`; see docs/data.md.
"""
