"""File formats, read strictly and written atomically: IDX (MNIST), TFRecord framing,
`tf.train.Example`, encoded images, and pickles of plain data.  Each reader names the file,
record and field of anything it cannot use."""
