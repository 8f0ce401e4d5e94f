"""Evaluation (framework-free): Recall@K retrieval and an image-folder reader for retrieval sets."""

from hcl_plugin.eval.image_folder import ImageReadError, RetrievalImageFolder, class_range
from hcl_plugin.eval.retrieval import DEFAULT_KS, nearest_neighbours, recall_at_k

__all__ = ["DEFAULT_KS", "ImageReadError", "RetrievalImageFolder", "class_range", "nearest_neighbours", "recall_at_k"]
