"""Looking inside a trained model directory (`visionflow inspect`).

  variables   every parameter and buffer: shape, dtype, trainable, statistics
  pictures    a conv layer's filters; the feature maps one image makes, with its top-k classes
  gradients   per-example gradient norms over a split (torch.func.vmap; the loop as fallback)
"""
