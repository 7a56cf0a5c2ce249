"""Export of trained generators and style-transfer models for deployment, and a client for
the served models.

* `tfstyle.export_lib.serving` - SavedModel for TF Serving (`serving_default` on float
  pixels, `translate_bytes` on encoded images), models.config and batching parameters.
* `tfstyle.export_lib.tflite` - LiteRT (TFLite) conversion at a fixed size: float32,
  float16, dynamic-range int8 and full int8 (uint8 in/out), builtin ops only.
* `tfstyle.export_lib.stylizer` - a trained attention auto-encoder with one style baked in,
  as an image -> image model that the SavedModel and LiteRT exports take like a generator.
* `tfstyle.export_lib.checks` - agreement (PSNR) with the Keras generator, latency, and the
  evaluation images drawn from the training data root.
* `tfstyle.export_lib.pipeline` - `export_generators`, what `python -m export.generators` runs.
* `tfstyle.export_lib.client` - REST and gRPC client for TF Serving (no TensorFlow import
  for REST).

Importing this package is cheap: each module loads TensorFlow only if it needs it.
"""
