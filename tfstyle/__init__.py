"""tfstyle: impression and style transfer for images on TensorFlow 2 + Keras 3.

Importing the package is cheap; TensorFlow loads with the modules that need it
(the subpackages: `tfstyle.cyclegan`, `tfstyle.style`, ...; see docs/architecture.md).
"""

import os

# TensorFlow turns its oneDNN CPU kernels on only for some CPUs; on the 2-core AMD machine of
# docs/benchmarks.md they make training steps faster. An explicit TF_ENABLE_ONEDNN_OPTS=0
# still wins. Takes effect when tfstyle is imported before TensorFlow,
# as every tfstyle command does.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

__version__ = "0.1.0"
