"""Pure post-processing over any backend's output: dequantize, top-k, filters, ambiguity."""

from edged.classify.topk import Class, Classification, Classifier, Labels, dequantize

__all__ = ["Class", "Classification", "Classifier", "Labels", "dequantize"]
