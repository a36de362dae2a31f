"""Measuring answer quality: labelled question sets and the metrics computed on them."""
