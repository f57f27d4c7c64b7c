"""Networks by name.  This file is the one list of model modules and the names each registers.

  registry      register_model, build_model, model_names, recipe_for (imports no model file)
  spec          ModelSpec: what a saved model is
  tutorial      mlp ("Mechanics 101"), cnn ("A Guide to TF Layers")
  cifar_cnn     cifar-cnn (the CIFAR-10 tutorial's network)
  resnet        resnet20 … resnet110 and their -v2 (cifar10_estimator's ResNets)
  fastnet       fastnet (airbench94-class speed recipe)
  transfer      transfer (a pretrained backbone with a new head: `visionflow retrain`)
  keras         keras (a Keras-style architecture saved by `visionflow.keras`, for export/serving)
  sequence      lstm (the tutorials' LSTM language model), rnn (an image read row by row by an LSTM)
  tabular       dense (an MLP over tabular features: CSV's numeric columns)
  backbones, pretrained, efficientnet_weights   pretrained ImageNet networks and their weights

A new model: a module here that registers it (with its recipes), and one `declare` line below.
This package never imports `visionflow.data` (nor anything above it).
"""

from .registry import build_model, declare, get_factory, model_names, recipe_for, register_model
from .spec import ModelSpec

declare("visionflow.models.tutorial", ("mlp", "cnn"))
declare("visionflow.models.cifar_cnn", ("cifar-cnn",))
declare("visionflow.models.resnet", [f"resnet{depth}{variant}" for depth in (20, 32, 44, 56, 110)
                                     for variant in ("", "-v2")])
declare("visionflow.models.fastnet", ("fastnet", "fastnet96"))
declare("visionflow.models.transfer", ("transfer",))
declare("visionflow.models.keras.serving", ("keras",))
declare("visionflow.models.sequence", ("lstm", "rnn"))
declare("visionflow.models.tabular", ("dense",))

#: Models of token streams, not images (`visionflow lm`); image commands refuse them.
LANGUAGE_MODELS = ("lstm",)

__all__ = ["LANGUAGE_MODELS", "ModelSpec", "build_model", "get_factory", "model_names", "recipe_for", "register_model"]
