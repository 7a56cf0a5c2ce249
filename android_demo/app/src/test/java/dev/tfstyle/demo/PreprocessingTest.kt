package dev.tfstyle.demo

import org.junit.Assert.assertArrayEquals
import org.junit.Assert.assertEquals
import org.junit.Test

class PreprocessingTest {

    private fun rgb(r: Int, g: Int, b: Int): Int = (0xFF shl 24) or (r shl 16) or (g shl 8) or b

    private fun spec(dtype: DType, scale: Float, offset: Float, size: Int = 2) =
        TensorSpec("image", intArrayOf(1, size, size, 3), dtype, Affine(scale, offset))

    @Test
    fun sameSizeIsTakenAsItIs() {
        val image = IntArray(9) { rgb(it * 20, 255 - it, 7) }
        val pixels = Preprocessing.toModelPixels(image, 3, 3, 3)
        for (i in 0 until 9) {
            assertEquals((i * 20).toFloat(), pixels[3 * i], 0f)
            assertEquals((255 - i).toFloat(), pixels[3 * i + 1], 0f)
            assertEquals(7f, pixels[3 * i + 2], 0f)
        }
    }

    @Test
    fun aWideImageAtTheModelHeightLosesItsSides() {
        // 4 x 2 at size 2: no resize, columns 1 and 2 are the centre square
        val image = IntArray(8) { rgb(it, 0, 0) }
        val pixels = Preprocessing.toModelPixels(image, 4, 2, 2)
        assertArrayEquals(floatArrayOf(1f, 2f, 5f, 6f), floatArrayOf(pixels[0], pixels[3], pixels[6], pixels[9]), 0f)
    }

    @Test
    fun halvingAveragesInFixedPointLikePillow() {
        // 2 x 2 -> 1: the bicubic filter widened by 2 weighs both samples 1/2 on each axis,
        // and each pass adds half a unit before truncating: red (0 + 100 + 1) / 2 = 50 and
        // 100 across, then (50 + 100 + 1) / 2 = 75 down; green (10 + 11 + 1) / 2 = 11
        val image = intArrayOf(rgb(0, 10, 255), rgb(100, 10, 255), rgb(100, 11, 255), rgb(100, 11, 255))
        val pixels = Preprocessing.toModelPixels(image, 2, 2, 1)
        assertArrayEquals(floatArrayOf(75f, 11f, 255f), pixels, 0f)
    }

    @Test
    fun aUniformPhotoStaysUniform() {
        val pixels = Preprocessing.toModelPixels(IntArray(13 * 9) { rgb(77, 0, 255) }, 13, 9, 4)
        assertEquals(4 * 4 * 3, pixels.size)
        for (i in 0 until 16) {
            assertArrayEquals(floatArrayOf(77f, 0f, 255f), pixels.copyOfRange(3 * i, 3 * i + 3), 0f)
        }
    }

    @Test
    fun uint8InputIsRoundedHalfToEvenAndClipped() {
        val data = Preprocessing.toTensor(
            floatArrayOf(0.5f, 1.5f, 254.6f, -3f, 300f, 127.5f, 2.5f, 0f, 0f, 0f, 0f, 0f),
            spec(DType.UINT8, 1f, 0f)
        ) as TensorData.Bytes
        val values = IntArray(7) { data.values[it].toInt() and 0xFF }
        assertArrayEquals(intArrayOf(0, 2, 255, 0, 255, 128, 2), values)
    }

    @Test
    fun floatInputFollowsFromPixels() {
        val data = Preprocessing.toTensor(FloatArray(12) { 255f }, spec(DType.FLOAT32, 1f / 127.5f, -1f))
            as TensorData.Floats
        for (v in data.values) assertEquals(1f, v, 1e-6f)
    }

    @Test
    fun uint8OutputFollowsToPixels() {
        // the full-int8 export: tanh quantized with scale 1/128, zero point 128 -> pixel = 0.99609375 q
        val raw = TensorData.Bytes(ByteArray(12) { if (it == 0) 255.toByte() else 128.toByte() })
        val pixels = Preprocessing.fromTensor(raw, spec(DType.UINT8, 0.99609375f, 0f))
        assertEquals(254.00390625f, pixels[0], 1e-4f) // shown as 254
        assertEquals(127.5f, pixels[1], 1e-4f) // shown as 128 (half to even)
        assertArrayEquals(
            intArrayOf(rgb(254, 128, 128)), Preprocessing.toArgb(pixels.copyOfRange(0, 3))
        )
    }

    @Test
    fun floatOutputIsClipped() {
        val raw = TensorData.Floats(floatArrayOf(-5f, 100.25f, 300f))
        val pixels = Preprocessing.fromTensor(raw, spec(DType.FLOAT32, 1f, 0f, 1))
        assertArrayEquals(floatArrayOf(0f, 100.25f, 255f), pixels, 0f)
    }
}
