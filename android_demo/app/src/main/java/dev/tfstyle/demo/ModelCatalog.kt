package dev.tfstyle.demo

import java.util.Locale
import org.json.JSONArray
import org.json.JSONException
import org.json.JSONObject

// What the app reads from assets/models/models.json, the file `python -m export.generators`
// writes next to the .tflite files (schema: docs/export.md, "models.json"). Pure Kotlin +
// org.json (part of Android), so the same source also compiles and runs on a desktop JVM
// (android_demo/jvm-check), where tests/test_android_contract.py checks it against a real
// export.

/**
 * Every JSON key the app reads, in one place. tests/test_android_contract.py extracts these
 * constants and checks that each one is present, with the type the app expects, in every
 * entry of the models.json the exporter writes.
 */
object Keys {
    /** Keys of the document itself. */
    object Document {
        const val FORMAT = "format"
        const val FORMAT_VERSION = "format_version"
        const val SIZE = "size"
        const val MODELS = "models"
    }

    /** Keys of one entry of "models". */
    object Entry {
        const val FILE = "file"
        const val MODEL_NAME = "model_name"
        const val DIRECTION = "direction"
        const val SOURCE_DOMAIN = "source_domain"
        const val TARGET_DOMAIN = "target_domain"
        const val VARIANT = "variant"
        const val SIZE_BYTES = "size_bytes"
        const val SIGNATURE_KEY = "signature_key"
        const val INPUT = "input"
        const val OUTPUT = "output"
        const val AGREEMENT = "agreement"
        const val LATENCY_MS = "latency_ms"
    }

    /** Keys of an entry's "input" and "output" tensor descriptions. */
    object Tensor {
        const val NAME = "name"
        const val SHAPE = "shape"
        const val DTYPE = "dtype"
        const val LAYOUT = "layout"
        const val CHANNELS = "channels"
        const val QUANTIZATION = "quantization"
    }

    /** The affine maps between pixels and tensor values. */
    object Affine {
        const val FROM_PIXELS = "from_pixels" // in "input"
        const val TO_PIXELS = "to_pixels" // in "output"
        const val SCALE = "scale"
        const val OFFSET = "offset"
    }

    /** Keys of "agreement" (the export's check against the Keras generator). */
    object Agreement {
        const val PSNR_DB = "psnr_db"
        const val THRESHOLD_DB = "threshold_db"
    }

    /** Keys of "latency_ms" (CPU latency measured at export time). */
    object Latency {
        const val MEDIAN_MS = "median_ms"
        const val THREADS = "threads"
    }

    /**
     * Optional: domain names per entry, {"A": "happy", "B": "scary"}, added by
     * fetch_models.sh --names=PREFIX:A_NAME:B_NAME (the exporter does not know them).
     */
    object Optional {
        const val DOMAIN_NAMES = "domain_names"
    }
}

/** The models.json this app understands. */
object CatalogFormat {
    const val NAME = "tfstyle.litert_models"
    const val VERSION = 1
    const val LAYOUT = "NHWC"
    const val CHANNELS = "RGB"
}

class CatalogException(message: String) : Exception(message)

/** value = pixel * scale + offset (input) or pixel = value * scale + offset (output). */
class Affine(val scale: Float, val offset: Float)

/** Element types the app can feed and read; `models.json` "dtype" names them. */
enum class DType(val jsonName: String, val bytes: Int, val min: Int, val max: Int) {
    FLOAT32("float32", 4, 0, 0),
    UINT8("uint8", 1, 0, 255),
    INT8("int8", 1, -128, 127);

    val quantized: Boolean
        get() = this != FLOAT32

    companion object {
        fun of(name: String): DType? {
            for (t in values()) {
                if (t.jsonName == name) return t
            }
            return null
        }
    }
}

/** One tensor of a model, as models.json describes it. */
class TensorSpec(
    val name: String,
    val shape: IntArray,
    val dtype: DType,
    /** from_pixels for the input, to_pixels for the output */
    val affine: Affine
) {
    val elements: Int
        get() {
            var n = 1
            for (d in shape) n *= d
            return n
        }
}

/** One LiteRT file of models.json. */
class ModelEntry(
    val file: String,
    val modelName: String,
    val direction: String,
    val sourceDomain: String,
    val targetDomain: String,
    val variant: String,
    val sizeBytes: Long,
    val signatureKey: String,
    val input: TensorSpec,
    val output: TensorSpec,
    /** worst-image PSNR (dB) against the Keras generator at export time, if recorded */
    val agreementPsnrDb: Double?,
    val thresholdDb: Double?,
    /** desktop CPU latency at export time, if recorded */
    val exportLatencyMs: Double?,
    val exportThreads: Int?,
    /** domain letter ("A", "B") -> name ("happy"), from fetch_models.sh --names */
    val domainNames: Map<String, String>
) {
    /** The model name without its direction suffix: "emotion" for "emotion_AtoB". */
    val prefix: String
        get() = modelName.removeSuffix("_$direction")

    /** "happy → scary" when the domains have names, else "A → B". */
    val directionLabel: String
        get() {
            val from = domainNames[sourceDomain] ?: sourceDomain
            val to = domainNames[targetDomain] ?: targetDomain
            return "$from → $to"
        }

    /** What the model chooser shows: "emotion: happy → scary · float16 · 0.03 MB". */
    val label: String
        get() = String.format(
            Locale.US, "%s: %s · %s · %.2f MB", prefix, directionLabel, variant, sizeBytes / 1e6
        )

    /** Path of the file inside the APK's assets. */
    val assetPath: String
        get() = ModelCatalog.ASSET_DIR + "/" + file
}

/** The parsed models.json: input side [size] and the accepted files. */
class ModelCatalog(val size: Int, val entries: List<ModelEntry>) {

    companion object {
        /** Folder inside the assets that fetch_models.sh fills. */
        const val ASSET_DIR = "models"
        const val FILE_NAME = "models.json"

        /** Parse and validate models.json; throws [CatalogException] naming what is wrong. */
        fun parse(text: String): ModelCatalog {
            val root = try {
                JSONObject(text)
            } catch (e: JSONException) {
                throw CatalogException("models.json is not valid JSON: ${e.message}")
            }
            val format = root.optString(Keys.Document.FORMAT, "")
            val version = root.optInt(Keys.Document.FORMAT_VERSION, -1)
            if (format != CatalogFormat.NAME || version != CatalogFormat.VERSION) {
                throw CatalogException(
                    "models.json has format \"$format\" version $version; this app reads " +
                        "\"${CatalogFormat.NAME}\" version ${CatalogFormat.VERSION}"
                )
            }
            val size = root.optInt(Keys.Document.SIZE, -1)
            if (size < 1) throw CatalogException("models.json has no valid \"size\"")
            val models = root.optJSONArray(Keys.Document.MODELS)
                ?: throw CatalogException("models.json has no \"models\" list")
            val entries = ArrayList<ModelEntry>()
            for (i in 0 until models.length()) {
                val obj = models.optJSONObject(i)
                    ?: throw CatalogException("models.json models[$i] is not an object")
                try {
                    entries.add(parseEntry(obj, size))
                } catch (e: JSONException) {
                    throw CatalogException("models.json models[$i]: ${e.message}")
                } catch (e: CatalogException) {
                    throw CatalogException("models.json models[$i]: ${e.message}")
                }
            }
            if (entries.isEmpty()) throw CatalogException("models.json lists no models")
            return ModelCatalog(size, entries)
        }

        private fun parseEntry(obj: JSONObject, size: Int): ModelEntry {
            val input = obj.getJSONObject(Keys.Entry.INPUT)
            val output = obj.getJSONObject(Keys.Entry.OUTPUT)
            val agreement = obj.optJSONObject(Keys.Entry.AGREEMENT)
            val latency = obj.optJSONObject(Keys.Entry.LATENCY_MS)
            val names = LinkedHashMap<String, String>()
            val domainNames = obj.optJSONObject(Keys.Optional.DOMAIN_NAMES)
            if (domainNames != null) {
                val it = domainNames.keys()
                while (it.hasNext()) {
                    val key = it.next()
                    names[key] = domainNames.getString(key)
                }
            }
            return ModelEntry(
                file = obj.getString(Keys.Entry.FILE),
                modelName = obj.getString(Keys.Entry.MODEL_NAME),
                direction = obj.getString(Keys.Entry.DIRECTION),
                sourceDomain = obj.getString(Keys.Entry.SOURCE_DOMAIN),
                targetDomain = obj.getString(Keys.Entry.TARGET_DOMAIN),
                variant = obj.getString(Keys.Entry.VARIANT),
                sizeBytes = obj.getLong(Keys.Entry.SIZE_BYTES),
                signatureKey = obj.getString(Keys.Entry.SIGNATURE_KEY),
                input = parseTensor(input, Keys.Affine.FROM_PIXELS, size, "input"),
                output = parseTensor(output, Keys.Affine.TO_PIXELS, size, "output"),
                agreementPsnrDb = optDouble(agreement, Keys.Agreement.PSNR_DB),
                thresholdDb = optDouble(agreement, Keys.Agreement.THRESHOLD_DB),
                exportLatencyMs = optDouble(latency, Keys.Latency.MEDIAN_MS),
                exportThreads = if (latency != null && latency.has(Keys.Latency.THREADS))
                    latency.getInt(Keys.Latency.THREADS) else null,
                domainNames = names
            )
        }

        private fun parseTensor(obj: JSONObject, affineKey: String, size: Int, what: String):
            TensorSpec {
            val shapeJson: JSONArray = obj.getJSONArray(Keys.Tensor.SHAPE)
            val shape = IntArray(shapeJson.length()) { shapeJson.getInt(it) }
            val expected = intArrayOf(1, size, size, 3)
            if (!shape.contentEquals(expected)) {
                throw CatalogException(
                    "$what shape ${shape.contentToString()} is not ${expected.contentToString()}"
                )
            }
            val dtypeName = obj.getString(Keys.Tensor.DTYPE)
            val dtype = DType.of(dtypeName)
                ?: throw CatalogException("$what dtype \"$dtypeName\" is not supported")
            val layout = obj.getString(Keys.Tensor.LAYOUT)
            val channels = obj.getString(Keys.Tensor.CHANNELS)
            if (layout != CatalogFormat.LAYOUT || channels != CatalogFormat.CHANNELS) {
                throw CatalogException("$what is $layout $channels, not NHWC RGB")
            }
            if (dtype.quantized && obj.isNull(Keys.Tensor.QUANTIZATION)) {
                throw CatalogException("$what is $dtypeName but has no quantization")
            }
            val affine = obj.getJSONObject(affineKey)
            return TensorSpec(
                name = obj.getString(Keys.Tensor.NAME),
                shape = shape,
                dtype = dtype,
                affine = Affine(
                    affine.getDouble(Keys.Affine.SCALE).toFloat(),
                    affine.getDouble(Keys.Affine.OFFSET).toFloat()
                )
            )
        }

        private fun optDouble(obj: JSONObject?, key: String): Double? =
            if (obj != null && obj.has(key) && !obj.isNull(key)) obj.getDouble(key) else null
    }
}
