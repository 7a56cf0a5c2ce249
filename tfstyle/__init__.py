"""tfstyle: impression and style transfer for images on TensorFlow 2 + Keras 3.

Importing the package is cheap; TensorFlow loads with the modules that need it
(`tfstyle.models`, `tfstyle.layers`, ...).
"""

__version__ = "0.1.0"
