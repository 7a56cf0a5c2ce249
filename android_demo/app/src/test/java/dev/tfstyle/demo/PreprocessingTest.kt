package dev.tfstyle.demo

import org.junit.Assert.assertArrayEquals
import org.junit.Assert.assertEquals
import org.junit.Test

class PreprocessingTest {

    private fun rgb(r: Int, g: Int, b: Int): Int = (0xFF shl 24) or (r shl 16) or (g shl 8) or b

    private fun spec(dtype: DType, scale: Float, offset: Float, size: Int = 2) =
        TensorSpec("image", intArrayOf(1, size, size, 3), dtype, Affine(scale, offset))

    @Test
    fun centreSquareOfAWideImageDropsItsSides() {
        // 4 x 2: columns 1 and 2 are the centre square
        val image = IntArray(8) { rgb(it, 0, 0) }
        val square = Preprocessing.centerSquare(image, 4, 2)
        assertArrayEquals(intArrayOf(rgb(1, 0, 0), rgb(2, 0, 0), rgb(5, 0, 0), rgb(6, 0, 0)), square)
    }

    @Test
    fun halvingAveragesTwoByTwoBlocksRoundingHalfUp() {
        val image = intArrayOf(rgb(0, 10, 255), rgb(1, 10, 255), rgb(0, 11, 254), rgb(1, 11, 254))
        // red (0+1+0+1+2)/4 = 1, green (42+2)/4 = 11, blue (1018+2)/4 = 255
        assertArrayEquals(intArrayOf(rgb(1, 11, 255)), Preprocessing.halve(image, 2))
    }

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
    fun bilinearSamplesPixelCentres() {
        // 3 -> 2: destination x samples source x = (x + 0.5) * 1.5 - 0.5 = 0.25 and 1.75
        val image = IntArray(9) { val x = it % 3; rgb(x * 100, 0, 0) }
        val pixels = Preprocessing.resizeBilinear(image, 3, 2)
        assertEquals(25f, pixels[0], 1e-4f)
        assertEquals(175f, pixels[3], 1e-4f)
    }

    @Test
    fun bigPhotosAreHalvedThenResized() {
        // 8 x 5 photo, size 2: square 5 -> halved to 2 (drops the odd row and column)
        val image = IntArray(40) { rgb(100, 100, 100) }
        val pixels = Preprocessing.toModelPixels(image, 8, 5, 2)
        assertEquals(12, pixels.size)
        for (v in pixels) assertEquals(100f, v, 0f)
    }

    @Test
    fun uint8InputIsRoundedHalfUpAndClipped() {
        val data = Preprocessing.toTensor(
            floatArrayOf(0.5f, 1.49f, 254.6f, -3f, 300f, 127.5f, 0f, 0f, 0f, 0f, 0f, 0f),
            spec(DType.UINT8, 1f, 0f)
        ) as TensorData.Bytes
        val values = IntArray(6) { data.values[it].toInt() and 0xFF }
        assertArrayEquals(intArrayOf(1, 1, 255, 0, 255, 128), values)
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
        assertEquals(127.5f, pixels[1], 1e-4f)
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
