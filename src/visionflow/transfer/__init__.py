"""Retraining a pretrained network for new categories (TensorFlow's image-retraining tutorial).

  retrain       `visionflow retrain`: image folder → bottlenecks → a new head, on the one engine
  bottlenecks   the backbone's features of each image, computed once and cached by content
"""
