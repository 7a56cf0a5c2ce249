// What the JVM tests of jvm-check/tests/ share: a models.json like the exporter's (a float16
// file with float32 tensors and a full-int8 file with uint8 tensors, both emotion_AtoB), the
// APK assets holding it, and photos.
package dev.tfstyle.demo

import java.io.File
import java.nio.file.Files

object TestModels {
    /** models.json "size" of the test models */
    const val SIZE = 4

    private fun tensor(name: String, dtype: String, quantization: String, affine: String) = """
        {"name": "$name", "tensor_name": "${name}_t:0", "position": 0, "shape": [1, $SIZE, $SIZE, 3],
         "dtype": "$dtype", "layout": "NHWC", "channels": "RGB", "range": [0.0, 255.0],
         "quantization": $quantization, $affine}"""

    private fun entry(variant: String, io: String, input: String, output: String) = """
        {"file": "emotion_AtoB_$variant.tflite", "model_name": "emotion_AtoB", "direction": "AtoB",
         "source_domain": "A", "target_domain": "B", "variant": "$variant", "size_bytes": 1000,
         "sha256": "00", "signature_key": "serving_default",
         "input": ${tensor("image", io, input, "\"from_pixels\": {\"scale\": 1.0, \"offset\": 0.0}")},
         "output": ${tensor("translated", io, output, "\"to_pixels\": " + toPixels(io))},
         "agreement": {"psnr_db": 50.0, "threshold_db": 40.0},
         "latency_ms": {"median_ms": 1.0, "threads": 1},
         "domain_names": {"A": "happy", "B": "scary"}}"""

    /** float outputs are tanh values in [-1, 1]; uint8 outputs here are pixels as they are */
    private fun toPixels(io: String) =
        if (io == "float32") "{\"scale\": 127.5, \"offset\": 127.5}" else "{\"scale\": 1.0, \"offset\": 0.0}"

    private const val IDENTITY = "{\"scale\": 1.0, \"zero_point\": 0}"

    val modelsJson: String = """
        {"format": "tfstyle.litert_models", "format_version": 1, "size": $SIZE, "models": [
          ${entry("int8", "uint8", IDENTITY, IDENTITY)},
          ${entry("float16", "float32", "null", "null")}
        ], "refused": []}"""

    val catalog: ModelCatalog = ModelCatalog.parse(modelsJson)
    val int8: ModelEntry = catalog.entries.first { it.variant == "int8" }
    val float16: ModelEntry = catalog.entries.first { it.variant == "float16" }

    /** A fresh assets/ folder: models/models.json and (empty) .tflite files, or without models.json. */
    fun assets(withCatalog: Boolean = true): File {
        val root = Files.createTempDirectory("assets").toFile()
        val models = File(root, ModelCatalog.ASSET_DIR)
        models.mkdirs()
        if (withCatalog) File(models, ModelCatalog.FILE_NAME).writeText(modelsJson)
        for (e in catalog.entries) File(models, e.file).writeBytes(ByteArray(1))
        return root
    }

    /**
     * An opaque photo whose every pixel differs, in mid-range (no model output reaches 0 or
     * 255): red = 40 + (7 * index + seed) % 170, green = 60 + x, blue = 80 + y.
     */
    fun photo(width: Int, height: Int, seed: Int = 0): Photo = Photo(IntArray(width * height) {
        val red = 40 + (7 * it + seed) % 170
        (0xFF shl 24) or (red shl 16) or ((60 + it % width) shl 8) or (80 + it / width)
    }, width, height)

    /** The input tensor of [entry] for [photo]. */
    fun tensor(photo: Photo, entry: ModelEntry): TensorData = Preprocessing.toTensor(
        Preprocessing.toModelPixels(photo.argb, photo.width, photo.height, SIZE), entry.input
    )
}
