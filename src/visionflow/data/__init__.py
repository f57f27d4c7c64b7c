"""Datasets and the input pipeline.

  base          Split, Dataset, hold-out, arrays → Dataset
  catalog       every dataset name → its reader (load_dataset, dataset_names)
  digits, mnist, cifar, shards, imagefolder     one reader per source
  download      checksummed downloads and safe archive extraction
  augment       the one description of training distortions (units, defaults, checks)
  distort       those distortions, batched on the training device
  streams       the named random streams of an epoch
  batches       device-resident batches (TensorBatches)
  convert       any dataset → TFRecord shards;  tfrecord_images: shards → an image folder

This package never imports `visionflow.models` (nor anything above it).
"""
