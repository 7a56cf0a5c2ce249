// Desktop-JVM driver for the app's pure-Kotlin code (ModelCatalog.kt, Orientation.kt,
// Preprocessing.kt), used by tests/test_android_contract.py, which compiles it with the app's
// sources and the fakes of jvm-check/fakes (android_demo/README.md) and runs
//
//   kotlin -cp check.jar:ANDROID_JSON_JAR dev.tfstyle.demo.check.ContractCheckKt REQUEST OUT
//
// ANDROID_JSON_JAR is Android's own org.json (Debian: libandroid-json-java). REQUEST is JSON:
//   {"models_json": PATH, "catalogs": [TEXT, ...],
//    "images": [{"name", "width", "height", "orientation", "argb": [int, ...]}],
//    "raw_outputs": [{"image", "file", "values": [number, ...]}]}
// with each image's pixels as stored in its file and its EXIF orientation tag. OUT gets what
// the app's code makes of them: the parsed entries, the catalog errors, each image upright,
// its model pixels and input tensors, and each raw output's pixels.
// Not part of the Android build (it lives outside app/).
package dev.tfstyle.demo.check

import dev.tfstyle.demo.CatalogException
import dev.tfstyle.demo.ModelCatalog
import dev.tfstyle.demo.ModelEntry
import dev.tfstyle.demo.Orientation
import dev.tfstyle.demo.Photo
import dev.tfstyle.demo.Preprocessing
import dev.tfstyle.demo.TensorData
import dev.tfstyle.demo.TensorSpec
import java.io.File
import org.json.JSONArray
import org.json.JSONObject

fun main(args: Array<String>) {
    val request = JSONObject(File(args[0]).readText())
    val response = JSONObject()

    val catalog = ModelCatalog.parse(File(request.getString("models_json")).readText())
    val entries = JSONArray()
    for (e in catalog.entries) entries.put(describe(e))
    response.put("size", catalog.size)
    response.put("entries", entries)

    val errors = JSONArray()
    val catalogs = request.optJSONArray("catalogs") ?: JSONArray()
    for (i in 0 until catalogs.length()) {
        try {
            ModelCatalog.parse(catalogs.getString(i))
            errors.put(JSONObject.NULL)
        } catch (e: CatalogException) {
            errors.put(e.message)
        }
    }
    response.put("catalog_errors", errors)

    val images = JSONObject()
    val requestImages = request.optJSONArray("images") ?: JSONArray()
    for (i in 0 until requestImages.length()) {
        val image = requestImages.getJSONObject(i)
        val argbJson = image.getJSONArray("argb")
        val stored = Photo(
            IntArray(argbJson.length()) { argbJson.getInt(it) }, image.getInt("width"),
            image.getInt("height")
        )
        val photo = Orientation.upright(stored, image.optInt("orientation", Orientation.NORMAL))
        val pixels = Preprocessing.toModelPixels(photo.argb, photo.width, photo.height, catalog.size)
        val inputs = JSONObject()
        for (e in catalog.entries) {
            inputs.put(e.file, tensorJson(Preprocessing.toTensor(pixels, e.input), e.input))
        }
        val result = JSONObject()
        result.put("width", photo.width)
        result.put("height", photo.height)
        result.put("upright", JSONArray().also { a -> for (v in photo.argb) a.put(v) })
        result.put("pixels", floats(pixels))
        result.put("inputs", inputs)
        images.put(image.getString("name"), result)
    }
    response.put("images", images)

    val outputs = JSONArray()
    val raw = request.optJSONArray("raw_outputs") ?: JSONArray()
    for (i in 0 until raw.length()) {
        val item = raw.getJSONObject(i)
        val entry = catalog.entries.first { it.file == item.getString("file") }
        val values = item.getJSONArray("values")
        val data: TensorData = if (entry.output.dtype.quantized) {
            TensorData.Bytes(ByteArray(values.length()) { values.getInt(it).toByte() })
        } else {
            TensorData.Floats(FloatArray(values.length()) { values.getDouble(it).toFloat() })
        }
        val pixels = Preprocessing.fromTensor(data, entry.output)
        val argb = Preprocessing.toArgb(pixels)
        val result = JSONObject()
        result.put("image", item.getString("image"))
        result.put("file", entry.file)
        result.put("pixels", floats(pixels))
        result.put("argb", JSONArray().also { a -> for (v in argb) a.put(v) })
        outputs.put(result)
    }
    response.put("outputs", outputs)

    File(args[1]).writeText(response.toString())
}

private fun describe(e: ModelEntry): JSONObject {
    val o = JSONObject()
    o.put("file", e.file)
    o.put("asset_path", e.assetPath)
    o.put("model_name", e.modelName)
    o.put("prefix", e.prefix)
    o.put("direction", e.direction)
    o.put("variant", e.variant)
    o.put("size_bytes", e.sizeBytes)
    o.put("signature_key", e.signatureKey)
    o.put("label", e.label)
    o.put("direction_label", e.directionLabel)
    o.put("input", tensorSpec(e.input))
    o.put("output", tensorSpec(e.output))
    o.put("agreement_psnr_db", e.agreementPsnrDb ?: JSONObject.NULL)
    o.put("threshold_db", e.thresholdDb ?: JSONObject.NULL)
    o.put("export_latency_ms", e.exportLatencyMs ?: JSONObject.NULL)
    return o
}

private fun tensorSpec(t: TensorSpec): JSONObject {
    val o = JSONObject()
    o.put("name", t.name)
    o.put("dtype", t.dtype.jsonName)
    o.put("shape", JSONArray().also { a -> for (d in t.shape) a.put(d) })
    o.put("scale", t.affine.scale.toDouble())
    o.put("offset", t.affine.offset.toDouble())
    return o
}

private fun tensorJson(data: TensorData, spec: TensorSpec): JSONArray = when (data) {
    is TensorData.Floats -> floats(data.values)
    is TensorData.Bytes -> JSONArray().also { a ->
        for (b in data.values) {
            a.put(if (spec.dtype.jsonName == "uint8") b.toInt() and 0xFF else b.toInt())
        }
    }
}

private fun floats(values: FloatArray): JSONArray {
    val a = JSONArray()
    for (v in values) a.put(v.toDouble())
    return a
}
