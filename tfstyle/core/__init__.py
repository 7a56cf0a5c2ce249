"""The shared core: images and the pixel range, atomic files, settings, layers, pretrained
weights, VGG19, tf.distribute, the training run machinery, the demo scenes."""
