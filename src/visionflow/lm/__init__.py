"""Language models: the tutorials' LSTM over words or characters, on the engine's Trainer.

  config      LMSettings, LMRunConfig (config.json) and the recipes by level
  training    train_lm: corpus → token streams → Trainer (carried state, plateau, validation)
  evaluation  evaluate_lm (streamed loss, perplexity, bits per token) and sample
  inference   a model directory loaded, evaluated, sampled (`visionflow lm evaluate/sample`)
"""
