"""Three keras.io-style examples written as user code against `from visionflow import keras`:
each must learn (accuracy well above chance) in a short CPU run."""

from __future__ import annotations

import numpy as np

from conftest import CIFAR_DIR, MNIST_DIR, needs_cifar, needs_mnist
from visionflow import keras
from visionflow.keras import layers


@needs_mnist
def test_simple_mnist_convnet_learns() -> None:
    (x_train, y_train), (x_test, y_test) = keras.datasets.mnist.load_data(data_dir=MNIST_DIR)
    assert x_train.shape == (60000, 28, 28) and x_train.dtype == np.uint8 and y_train.shape == (60000,)
    x_train = np.expand_dims(x_train[:8000].astype("float32") / 255, -1)
    x_test = np.expand_dims(x_test[:2000].astype("float32") / 255, -1)
    y_train = keras.utils.to_categorical(y_train[:8000], 10)
    y_test = keras.utils.to_categorical(y_test[:2000], 10)
    keras.utils.set_random_seed(7)
    model = keras.Sequential([
        keras.Input(shape=(28, 28, 1)),
        layers.Conv2D(32, kernel_size=(3, 3), activation="relu"),
        layers.MaxPooling2D(pool_size=(2, 2)),
        layers.Conv2D(64, kernel_size=(3, 3), activation="relu"),
        layers.MaxPooling2D(pool_size=(2, 2)),
        layers.Flatten(),
        layers.Dropout(0.5),
        layers.Dense(10, activation="softmax"),
    ])
    model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    history = model.fit(x_train, y_train, batch_size=128, epochs=2, validation_split=0.1, verbose=0)
    assert set(history.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert history.epoch == [0, 1]
    assert history.history["loss"][1] < history.history["loss"][0]
    loss, accuracy = model.evaluate(x_test, y_test, verbose=0)
    assert accuracy > 0.9, accuracy
    probabilities = model.predict(x_test[:5], verbose=0)
    np.testing.assert_allclose(probabilities.sum(1), 1.0, rtol=1e-5)  # the softmax is applied once


@needs_cifar
def test_cifar10_cnn_with_augmentation_learns() -> None:
    (x_train, y_train), (x_test, y_test) = keras.datasets.cifar10.load_data(data_dir=CIFAR_DIR)
    assert x_train.shape == (50000, 32, 32, 3) and y_train.shape == (50000, 1)
    x_train, y_train = x_train[:10000], y_train[:10000]
    keras.utils.set_random_seed(3)
    augment = keras.Sequential([layers.RandomFlip("horizontal"), layers.RandomTranslation(0.1, 0.1)])
    inputs = keras.Input((32, 32, 3))
    x = layers.Rescaling(1.0 / 255)(inputs)
    x = augment(x)
    x = layers.Conv2D(32, 3, padding="same", activation="relu")(x)
    x = layers.BatchNormalization(momentum=0.9)(x)  # a short run: moving statistics must keep up
    x = layers.MaxPooling2D()(x)
    shortcut = x
    x = layers.Conv2D(32, 3, padding="same", activation="relu")(x)
    x = layers.Conv2D(32, 3, padding="same")(x)
    x = layers.Activation("relu")(layers.Add()([x, shortcut]))
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(10)(x)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.Adam(3e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    model.fit(x_train.astype("float32"), y_train, batch_size=64, epochs=3, verbose=0)
    _, accuracy = model.evaluate(x_test[:2000].astype("float32"), y_test[:2000], verbose=0)
    assert accuracy > 0.3, accuracy  # chance is 0.1


def test_lstm_sequence_classifier_learns() -> None:
    """Token sequences labelled by whether their ids average above 4.5: the embedding must learn
    each id's weight and the LSTM must add them up over the sequence."""
    rng = np.random.default_rng(0)
    length = 16
    x = rng.integers(0, 10, size=(3000, length))
    y = (x.mean(1) > 4.5).astype("int64")
    keras.utils.set_random_seed(1)
    model = keras.Sequential([
        layers.Embedding(10, 8),
        layers.LSTM(16, return_sequences=True),
        layers.LSTM(16),
        layers.Dense(2, activation="softmax"),
    ])
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    history = model.fit(x[:2500], y[:2500], batch_size=64, epochs=4, verbose=0, validation_data=(x[2500:], y[2500:]))
    assert history.history["val_accuracy"][-1] > 0.85, history.history
    assert model.layers[1].output_shape_ == (length, 16)
