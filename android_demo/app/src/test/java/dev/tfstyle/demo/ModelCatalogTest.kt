package dev.tfstyle.demo

import org.junit.Assert.assertEquals
import org.junit.Assert.assertNull
import org.junit.Assert.assertTrue
import org.junit.Assert.fail
import org.junit.Test

class ModelCatalogTest {

    /** One int8 entry as docs/export.md documents models.json, trimmed to what matters. */
    private fun document(format: String = "tfstyle.litert_models", version: Int = 1, shape: String = "[1, 256, 256, 3]") = """
        {"format": "$format", "format_version": $version, "size": 256, "models": [{
          "file": "horse2zebra_AtoB_int8.tflite", "model_name": "horse2zebra_AtoB",
          "direction": "AtoB", "source_domain": "A", "target_domain": "B", "variant": "int8",
          "size_bytes": 11556248, "sha256": "00", "signature_key": "serving_default",
          "input": {"name": "image", "tensor_name": "serving_default_image:0", "position": 0,
            "shape": $shape, "dtype": "uint8", "layout": "NHWC", "channels": "RGB",
            "range": [0.0, 255.0], "quantization": {"scale": 1.0, "zero_point": 0},
            "from_pixels": {"scale": 1.0, "offset": 0.0}},
          "output": {"name": "translated", "tensor_name": "StatefulPartitionedCall:0",
            "position": 0, "shape": [1, 256, 256, 3], "dtype": "uint8", "layout": "NHWC",
            "channels": "RGB", "range": [-1.0, 1.0],
            "quantization": {"scale": 0.0078125, "zero_point": 128},
            "to_pixels": {"scale": 0.99609375, "offset": 0.0}},
          "agreement": {"psnr_db": 27.28, "threshold_db": 20.0},
          "latency_ms": {"median_ms": 2305.9, "p90_ms": 2746.0, "runs": 10, "threads": 2}
        }], "refused": []}
    """.trimIndent()

    @Test
    fun parsesTheDocumentedEntry() {
        val catalog = ModelCatalog.parse(document())
        assertEquals(256, catalog.size)
        val e = catalog.entries.single()
        assertEquals("models/horse2zebra_AtoB_int8.tflite", e.assetPath)
        assertEquals("horse2zebra", e.prefix)
        assertEquals("A → B", e.directionLabel)
        assertEquals(DType.UINT8, e.input.dtype)
        assertEquals("image", e.input.name)
        assertEquals("translated", e.output.name)
        assertEquals(0.99609375f, e.output.affine.scale, 0f)
        assertEquals(256 * 256 * 3, e.input.elements)
        assertEquals(27.28, e.agreementPsnrDb!!, 0.0)
        assertEquals(2, e.exportThreads)
        assertTrue(e.domainNames.isEmpty())
    }

    @Test
    fun domainNamesFromFetchModelsMakeTheLabel() {
        val text = document().replace(
            "\"variant\": \"int8\",", "\"variant\": \"int8\", \"domain_names\": {\"A\": \"horse\", \"B\": \"zebra\"},"
        )
        val e = ModelCatalog.parse(text).entries.single()
        assertEquals("horse → zebra", e.directionLabel)
        assertEquals("horse2zebra: horse → zebra · int8 · 11.56 MB", e.label)
    }

    @Test
    fun refusesOtherFormatsAndShapes() {
        expectError(document(version = 2), "version 2")
        expectError(document(format = "other"), "\"other\"")
        expectError(document(shape = "[1, 128, 128, 3]"), "input shape [1, 128, 128, 3]")
        expectError("{", "not valid JSON")
    }

    @Test
    fun optionalFieldsMayBeMissing() {
        val text = document().replace(
            "\"agreement\": {\"psnr_db\": 27.28, \"threshold_db\": 20.0},", ""
        )
        val e = ModelCatalog.parse(text).entries.single()
        assertNull(e.agreementPsnrDb)
        assertNull(e.thresholdDb)
    }

    private fun expectError(text: String, fragment: String) {
        try {
            ModelCatalog.parse(text)
            fail("expected a CatalogException mentioning $fragment")
        } catch (e: CatalogException) {
            assertTrue("${e.message} should mention $fragment", e.message!!.contains(fragment))
        }
    }
}
