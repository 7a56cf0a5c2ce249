package dev.tfstyle.demo

// Turning a photo upright from its EXIF orientation tag, on ARGB pixels. Pure Kotlin, so
// tests/test_android_contract.py runs it on the JVM against the Python pipeline
// (tfstyle.core.images.read_image, which applies Pillow's ImageOps.exif_transpose).

/** A decoded photo: ARGB pixels row by row (upright once [Orientation.upright] has run). */
class Photo(val argb: IntArray, val width: Int, val height: Int)

/**
 * The EXIF orientation tag (0x0112; the same values as ExifInterface.ORIENTATION_*) says how
 * the stored pixels must be turned to be seen upright.
 */
object Orientation {
    const val NORMAL = 1
    const val FLIP_HORIZONTAL = 2
    const val ROTATE_180 = 3
    const val FLIP_VERTICAL = 4
    const val TRANSPOSE = 5
    const val ROTATE_90 = 6 // clockwise
    const val TRANSVERSE = 7
    const val ROTATE_270 = 8 // clockwise (90 anticlockwise)

    /**
     * The upright photo of [stored] pixels carrying EXIF orientation [tag]; the photo itself
     * for NORMAL and for values outside 1..8 (as Pillow ignores them). Quarter turns and
     * mirrors only: every pixel is moved as it is.
     */
    fun upright(stored: Photo, tag: Int): Photo {
        if (tag < FLIP_HORIZONTAL || tag > ROTATE_270) return stored
        val w = stored.width
        val h = stored.height
        val src = stored.argb
        val swaps = tag >= TRANSPOSE // the upright photo is h wide and w high
        val outW = if (swaps) h else w
        val outH = if (swaps) w else h
        val out = IntArray(w * h)
        for (y in 0 until outH) {
            for (x in 0 until outW) {
                // (sx, sy): the stored pixel shown at (x, y)
                val sx: Int
                val sy: Int
                when (tag) {
                    FLIP_HORIZONTAL -> { sx = w - 1 - x; sy = y }
                    ROTATE_180 -> { sx = w - 1 - x; sy = h - 1 - y }
                    FLIP_VERTICAL -> { sx = x; sy = h - 1 - y }
                    TRANSPOSE -> { sx = y; sy = x }
                    ROTATE_90 -> { sx = y; sy = h - 1 - x }
                    TRANSVERSE -> { sx = w - 1 - y; sy = h - 1 - x }
                    else -> { sx = w - 1 - y; sy = x } // ROTATE_270
                }
                out[y * outW + x] = src[sy * w + sx]
            }
        }
        return Photo(out, outW, outH)
    }
}
