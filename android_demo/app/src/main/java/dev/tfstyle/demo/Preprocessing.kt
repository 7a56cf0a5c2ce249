package dev.tfstyle.demo

import kotlin.math.floor

// Pre- and postprocessing between a photo and a model's tensors. Pure Kotlin on ARGB int
// arrays (what android.graphics.Bitmap.getPixels gives), so it runs unchanged on a desktop JVM:
// tests/test_android_contract.py compiles this file (android_demo/jvm-check) and compares it
// with its Python re-implementation, which it runs through the exported .tflite files against
// the Keras generator.
//
// The steps, from the decoded photo (EXIF orientation applied, sRGB, ARGB_8888) to the model
// input, S = models.json "size":
//
//  1. Centre square: side = min(w, h); left = (w - side) / 2, top = (h - side) / 2 (integer
//     division). Nothing is stretched: a non-square photo loses its sides (or top and bottom).
//  2. Halving: while side / 2 >= S, each 2x2 block becomes one pixel, per channel
//     (a + b + c + d + 2) / 4 in integers; an odd side drops its last row and column. This
//     is a box filter, so a 12-megapixel photo does not alias on its way down to S.
//  3. Bilinear resize from side (S <= side < 2S) to S: destination pixel x samples
//     sx = (x + 0.5) * side / S - 0.5, clamped to [0, side - 1], between floor(sx) and the
//     next pixel (clamped) with weight sx - floor(sx); rows likewise; float32 arithmetic,
//     the result is float RGB pixels in [0, 255], not rounded. (Android's
//     Bitmap.createScaledBitmap(filter = true) is bilinear too, but Skia's exact sampling is
//     not specified, so the app does this step itself.)
//  4. Pixels -> tensor, following the model's models.json "input": value = pixel *
//     from_pixels.scale + from_pixels.offset; for a uint8 / int8 tensor the value is rounded
//     half up (floor(value + 0.5)) and clipped to the type's range.
//
// And from the model output back to pixels, following "output":
//
//  5. pixel = raw * to_pixels.scale + to_pixels.offset (raw: the float, or the integer of a
//     uint8 / int8 tensor), clipped to [0, 255]; shown and saved rounded half up.
//
// Alpha is dropped (the RGB of the unpremultiplied pixel), as the exporter's own image
// decoding does.

/** What goes into or comes out of a model tensor. */
sealed class TensorData {
    class Floats(val values: FloatArray) : TensorData()

    /** uint8 or int8 elements, as their bit patterns */
    class Bytes(val values: ByteArray) : TensorData()
}

object Preprocessing {

    /** Steps 1-3: oriented ARGB photo [width x height] -> RGB float pixels [size * size * 3]. */
    fun toModelPixels(argb: IntArray, width: Int, height: Int, size: Int): FloatArray {
        require(size >= 1) { "size must be positive, got $size" }
        require(width >= 1 && height >= 1 && argb.size == width * height) {
            "argb has ${argb.size} pixels, not $width x $height"
        }
        var side = if (width < height) width else height
        var square = centerSquare(argb, width, height)
        while (side / 2 >= size) {
            square = halve(square, side)
            side /= 2
        }
        return resizeBilinear(square, side, size)
    }

    /** Step 1: the centre square of side min(width, height). */
    fun centerSquare(argb: IntArray, width: Int, height: Int): IntArray {
        val side = if (width < height) width else height
        val left = (width - side) / 2
        val top = (height - side) / 2
        val out = IntArray(side * side)
        for (y in 0 until side) {
            System.arraycopy(argb, (top + y) * width + left, out, y * side, side)
        }
        return out
    }

    /** Step 2, once: [side x side] -> [side / 2 x side / 2], 2x2 box average per channel. */
    fun halve(argb: IntArray, side: Int): IntArray {
        val half = side / 2
        val out = IntArray(half * half)
        for (y in 0 until half) {
            val row0 = (2 * y) * side
            val row1 = row0 + side
            for (x in 0 until half) {
                val a = argb[row0 + 2 * x]
                val b = argb[row0 + 2 * x + 1]
                val c = argb[row1 + 2 * x]
                val d = argb[row1 + 2 * x + 1]
                val r = (red(a) + red(b) + red(c) + red(d) + 2) / 4
                val g = (green(a) + green(b) + green(c) + green(d) + 2) / 4
                val bl = (blue(a) + blue(b) + blue(c) + blue(d) + 2) / 4
                out[y * half + x] = argb(r, g, bl)
            }
        }
        return out
    }

    /** Step 3: bilinear [side x side] ARGB -> [size x size] RGB floats (see the file comment). */
    fun resizeBilinear(argb: IntArray, side: Int, size: Int): FloatArray {
        val scale = side.toFloat() / size.toFloat()
        val i0 = IntArray(size)
        val i1 = IntArray(size)
        val w = FloatArray(size)
        for (i in 0 until size) {
            var s = (i.toFloat() + 0.5f) * scale - 0.5f
            if (s < 0f) s = 0f
            if (s > (side - 1).toFloat()) s = (side - 1).toFloat()
            val f = floor(s)
            i0[i] = f.toInt()
            i1[i] = if (i0[i] + 1 < side) i0[i] + 1 else side - 1
            w[i] = s - f
        }
        val out = FloatArray(size * size * 3)
        for (y in 0 until size) {
            val fy = w[y]
            val row0 = i0[y] * side
            val row1 = i1[y] * side
            for (x in 0 until size) {
                val fx = w[x]
                val a = argb[row0 + i0[x]]
                val b = argb[row0 + i1[x]]
                val c = argb[row1 + i0[x]]
                val d = argb[row1 + i1[x]]
                val o = (y * size + x) * 3
                out[o] = lerp2(red(a), red(b), red(c), red(d), fx, fy)
                out[o + 1] = lerp2(green(a), green(b), green(c), green(d), fx, fy)
                out[o + 2] = lerp2(blue(a), blue(b), blue(c), blue(d), fx, fy)
            }
        }
        return out
    }

    /** Step 4: RGB float pixels -> the input tensor, following its models.json "input". */
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
            var q = roundHalfUp(pixels[it] * scale + offset)
            if (q < lo) q = lo
            if (q > hi) q = hi
            q.toByte() // 0..255 keeps its bit pattern; the tensor reads it back as uint8
        })
    }

    /** Step 5: the raw output tensor -> RGB float pixels in [0, 255]. */
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

    /** RGB float pixels -> opaque ARGB ints, each channel rounded half up and clipped. */
    fun toArgb(pixels: FloatArray): IntArray {
        val out = IntArray(pixels.size / 3)
        for (i in out.indices) {
            out[i] = argb(
                channel(pixels[3 * i]), channel(pixels[3 * i + 1]), channel(pixels[3 * i + 2])
            )
        }
        return out
    }

    fun roundHalfUp(v: Float): Int = floor(v + 0.5f).toInt()

    private fun channel(v: Float): Int {
        val q = roundHalfUp(v)
        return if (q < 0) 0 else if (q > 255) 255 else q
    }

    private fun clip255(v: Float): Float = if (v < 0f) 0f else if (v > 255f) 255f else v

    private fun lerp2(a: Int, b: Int, c: Int, d: Int, fx: Float, fy: Float): Float {
        val top = a.toFloat() * (1f - fx) + b.toFloat() * fx
        val bottom = c.toFloat() * (1f - fx) + d.toFloat() * fx
        return top * (1f - fy) + bottom * fy
    }

    private fun red(c: Int): Int = (c shr 16) and 0xFF
    private fun green(c: Int): Int = (c shr 8) and 0xFF
    private fun blue(c: Int): Int = c and 0xFF
    private fun argb(r: Int, g: Int, b: Int): Int =
        (0xFF shl 24) or (r shl 16) or (g shl 8) or b
}
