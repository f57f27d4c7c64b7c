"""Using trained models on new inputs.

  predict       image files and .npy batches → model inputs → probabilities and predictions
  labeling      `visionflow label-image`: top-k labels by a model directory or an export
  imagenet      `visionflow classify-image`: a pretrained network's own ImageNet labels
"""
