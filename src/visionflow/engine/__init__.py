"""The training engine: one loop (`loop.Trainer`) that the CLI, the Estimator-style API and the
Keras-style face all drive, and everything a run keeps in its model directory.

  config        TrainConfig / RunConfig: the typed config saved as config.json
  recipes       model recipe + flags + stored run → the config to train with
  training      train(): data → model → Trainer → test evaluation
  loop          Trainer: the loop;  callbacks: Callback base and the one dispatcher
  checkpointing, summaries, reporting, averaging, validation   the built-in callbacks
  optim         optimizers and learning-rate schedules
  checkpoint    the checkpoint files;  modeldir: the model directory's layout
  evaluation    the evaluation loop, evaluating a directory, --watch;  metrics, plots
  run_data      the dataset a saved run was trained on
"""
