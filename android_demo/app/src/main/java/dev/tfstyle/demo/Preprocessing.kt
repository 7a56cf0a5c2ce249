package dev.tfstyle.demo

import kotlin.math.ceil

// Pre- and postprocessing between a photo and a model's tensors. Pure Kotlin on ARGB int
// arrays (what android.graphics.Bitmap.getPixels gives), so it runs unchanged on a desktop JVM:
// tests/test_android_contract.py compiles this file (android_demo/jvm-check) and checks that
// it gives, pixel for pixel, the tensor the Python pipeline gives the same image.
//
// The model input is what the exporter checked each .tflite on (tfstyle.deploy.checks
// .center_square, whose agreement with the Keras generator models.json records), computed
// the same way, S = models.json "size":
//
//  1. Resize so the shorter side is S: the new size is max(S, round(side * S / min(w, h)))
//     for each side (round half to even, as Python's round), with Pillow's bicubic filter
//     (Image.resize(BICUBIC), tfstyle.core.images.resize): a = -0.5, the filter widened by
//     the reduction factor (antialiased), weights in 22-bit fixed point, the horizontal pass
//     first, rounded to 8 bits between the passes and at the end.
//  2. Centre crop S x S: left = (new_w - S) / 2, top = (new_h - S) / 2 (integer division).
//     Only the cropped window is computed; it equals the crop of the whole resized image.
//  3. Pixels -> tensor, following the model's models.json "input": value = pixel *
//     from_pixels.scale + from_pixels.offset in float32; for a uint8 / int8 tensor the value
//     is rounded half to even and clipped to the type's range (tfstyle.deploy.litert
//     .LiteModel.run, which the export's checks feed the .tflite files with).
//
// And from the model output back to pixels, following "output":
//
//  4. pixel = raw * to_pixels.scale + to_pixels.offset (raw: the float, or the integer of a
//     uint8 / int8 tensor), clipped to [0, 255]; shown and saved rounded half to even (as
//     tfstyle.core.images.to_uint8 and write_image).
//
// Alpha is dropped (the RGB of the unpremultiplied pixel).

/** What goes into or comes out of a model tensor. */
sealed class TensorData {
    class Floats(val values: FloatArray) : TensorData()

    /** uint8 or int8 elements, as their bit patterns */
    class Bytes(val values: ByteArray) : TensorData()
}

object Preprocessing {

    /** Pillow's fixed-point precision for 8-bit images (Resample.c PRECISION_BITS). */
    private const val PRECISION_BITS = 32 - 8 - 2

    /**
     * Steps 1-2: upright ARGB photo [width x height] -> RGB pixels [size * size * 3], each an
     * integer 0..255 held as a float.
     */
    fun toModelPixels(argb: IntArray, width: Int, height: Int, size: Int): FloatArray {
        require(size >= 1) { "size must be positive, got $size" }
        require(width >= 1 && height >= 1 && argb.size == width * height) {
            "argb has ${argb.size} pixels, not $width x $height"
        }
        val shorter = if (width < height) width else height
        val scale = size.toDouble() / shorter
        val newW = maxOf(size, Math.rint(width * scale).toInt())
        val newH = maxOf(size, Math.rint(height * scale).toInt())
        val left = (newW - size) / 2
        val top = (newH - size) / 2
        val columns = Taps(width, newW, left, size)
        val rows = Taps(height, newH, top, size)

        // Horizontal pass over the source rows the cropped output rows read.
        val firstRow = if (newH == height) top else rows.first[0]
        val endRow = if (newH == height) top + size else rows.first[size - 1] + rows.count[size - 1]
        val band = IntArray((endRow - firstRow) * size * 3)
        for (r in firstRow until endRow) {
            val src = r * width
            val dst = (r - firstRow) * size * 3
            for (j in 0 until size) {
                val o = dst + 3 * j
                if (newW == width) {
                    val c = argb[src + left + j]
                    band[o] = red(c)
                    band[o + 1] = green(c)
                    band[o + 2] = blue(c)
                    continue
                }
                var s0 = 1 shl (PRECISION_BITS - 1)
                var s1 = s0
                var s2 = s0
                val k = j * columns.ksize
                val x0 = src + columns.first[j]
                for (t in 0 until columns.count[j]) {
                    val c = argb[x0 + t]
                    val w = columns.weights[k + t]
                    s0 += red(c) * w
                    s1 += green(c) * w
                    s2 += blue(c) * w
                }
                band[o] = clip8(s0)
                band[o + 1] = clip8(s1)
                band[o + 2] = clip8(s2)
            }
        }

        // Vertical pass.
        val out = FloatArray(size * size * 3)
        for (i in 0 until size) {
            for (j in 0 until size) {
                val o = (i * size + j) * 3
                if (newH == height) {
                    val b = ((top + i - firstRow) * size + j) * 3
                    out[o] = band[b].toFloat()
                    out[o + 1] = band[b + 1].toFloat()
                    out[o + 2] = band[b + 2].toFloat()
                    continue
                }
                var s0 = 1 shl (PRECISION_BITS - 1)
                var s1 = s0
                var s2 = s0
                val k = i * rows.ksize
                val y0 = rows.first[i] - firstRow
                for (t in 0 until rows.count[i]) {
                    val b = ((y0 + t) * size + j) * 3
                    val w = rows.weights[k + t]
                    s0 += band[b] * w
                    s1 += band[b + 1] * w
                    s2 += band[b + 2] * w
                }
                out[o] = clip8(s0).toFloat()
                out[o + 1] = clip8(s1).toFloat()
                out[o + 2] = clip8(s2).toFloat()
            }
        }
        return out
    }

    /**
     * Pillow's bicubic taps (Resample.c precompute_coeffs + normalize_coeffs_8bpc) of the
     * [n] output samples [from, from + n) of a resize from [inSize] to [outSize] samples:
     * for sample k, [count] source samples from [first], with fixed-point [weights].
     */
    private class Taps(inSize: Int, outSize: Int, from: Int, n: Int) {
        val first = IntArray(n)
        val count = IntArray(n)
        val ksize: Int
        val weights: IntArray

        init {
            val scale = inSize.toDouble() / outSize
            val filterScale = if (scale < 1.0) 1.0 else scale
            val support = 2.0 * filterScale // the bicubic filter's support is 2
            ksize = ceil(support).toInt() * 2 + 1
            weights = IntArray(n * ksize)
            val k = DoubleArray(ksize)
            for (j in 0 until n) {
                val center = (from + j + 0.5) * scale
                val ss = 1.0 / filterScale
                var xmin = (center - support + 0.5).toInt()
                if (xmin < 0) xmin = 0
                var xmax = (center + support + 0.5).toInt()
                if (xmax > inSize) xmax = inSize
                xmax -= xmin
                var ww = 0.0
                for (x in 0 until xmax) {
                    val w = bicubic((x + xmin - center + 0.5) * ss)
                    k[x] = w
                    ww += w
                }
                for (x in 0 until xmax) {
                    if (ww != 0.0) k[x] /= ww
                    val fixed = k[x] * (1 shl PRECISION_BITS)
                    weights[j * ksize + x] = if (k[x] < 0) (-0.5 + fixed).toInt() else (0.5 + fixed).toInt()
                }
                first[j] = xmin
                count[j] = xmax
            }
        }
    }

    /** Pillow's bicubic kernel, a = -0.5. */
    private fun bicubic(value: Double): Double {
        val a = -0.5
        val x = if (value < 0.0) -value else value
        if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1
        if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a
        return 0.0
    }

    private fun clip8(v: Int): Int {
        if (v >= (1 shl PRECISION_BITS shl 8)) return 255
        if (v <= 0) return 0
        return v shr PRECISION_BITS
    }

    /** Step 3: RGB float pixels -> the input tensor, following its models.json "input". */
    fun toTensor(pixels: FloatArray, spec: TensorSpec): TensorData {
        require(pixels.size == spec.elements) {
            "${pixels.size} values for an input of ${spec.elements} elements"
        }
        val scale = spec.affine.scale
        val offset = spec.affine.offset
        if (!spec.dtype.quantized) {
            return TensorData.Floats(FloatArray(pixels.size) { pixels[it] * scale + offset })
        }
        val lo = spec.dtype.min
        val hi = spec.dtype.max
        return TensorData.Bytes(ByteArray(pixels.size) {
            var q = roundHalfEven(pixels[it] * scale + offset)
            if (q < lo) q = lo
            if (q > hi) q = hi
            q.toByte() // 0..255 keeps its bit pattern; the tensor reads it back as uint8
        })
    }

    /** Step 4: the raw output tensor -> RGB float pixels in [0, 255]. */
    fun fromTensor(data: TensorData, spec: TensorSpec): FloatArray {
        val scale = spec.affine.scale
        val offset = spec.affine.offset
        return when (data) {
            is TensorData.Floats -> FloatArray(data.values.size) {
                clip255(data.values[it] * scale + offset)
            }
            is TensorData.Bytes -> FloatArray(data.values.size) {
                val b = data.values[it].toInt()
                val raw = if (spec.dtype == DType.UINT8) b and 0xFF else b
                clip255(raw.toFloat() * scale + offset)
            }
        }
    }

    /** RGB float pixels -> opaque ARGB ints, each channel rounded half to even and clipped. */
    fun toArgb(pixels: FloatArray): IntArray {
        val out = IntArray(pixels.size / 3)
        for (i in out.indices) {
            out[i] = argb(
                channel(pixels[3 * i]), channel(pixels[3 * i + 1]), channel(pixels[3 * i + 2])
            )
        }
        return out
    }

    fun roundHalfEven(v: Float): Int = Math.rint(v.toDouble()).toInt()

    private fun channel(v: Float): Int {
        val q = roundHalfEven(v)
        return if (q < 0) 0 else if (q > 255) 255 else q
    }

    private fun clip255(v: Float): Float = if (v < 0f) 0f else if (v > 255f) 255f else v

    private fun red(c: Int): Int = (c shr 16) and 0xFF
    private fun green(c: Int): Int = (c shr 8) and 0xFF
    private fun blue(c: Int): Int = c and 0xFF
    private fun argb(r: Int, g: Int, b: Int): Int =
        (0xFF shl 24) or (r shl 16) or (g shl 8) or b
}
