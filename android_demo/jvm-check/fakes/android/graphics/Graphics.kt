// Fakes of android.graphics for the JVM tests: bitmaps hold ARGB ints; the decoders decode
// the FakeDevice photo behind a content resolver stream or source, subsampled as asked.
// ImageDecoder applies the EXIF orientation (as the SDK's does) with the app's own
// Orientation.upright, which tests/test_android_contract.py checks against Pillow.
package android.graphics

import android.content.ContentResolver
import android.content.PhotoStream
import android.net.Uri
import android.util.Size
import dev.tfstyle.demo.Orientation
import dev.tfstyle.demo.Photo
import java.io.IOException
import java.io.InputStream
import java.io.OutputStream
import tfstyle.fake.FakeDevice
import tfstyle.fake.FakePhoto

class Bitmap private constructor(
    val width: Int,
    val height: Int,
    val config: Config,
    private val pixels: IntArray
) {
    enum class Config { ALPHA_8, RGB_565, ARGB_8888, HARDWARE }
    enum class CompressFormat { JPEG, PNG, WEBP }

    fun copy(config: Config, isMutable: Boolean): Bitmap? = Bitmap(width, height, config, pixels.copyOf())

    fun getPixels(out: IntArray, offset: Int, stride: Int, x: Int, y: Int, width: Int, height: Int) {
        for (row in 0 until height) {
            System.arraycopy(pixels, (y + row) * this.width + x, out, offset + row * stride, width)
        }
    }

    fun compress(format: CompressFormat, quality: Int, stream: OutputStream): Boolean =
        throw UnsupportedOperationException("fake")

    companion object {
        fun createBitmap(colors: IntArray, width: Int, height: Int, config: Config): Bitmap {
            require(colors.size >= width * height) { "array too small" }
            return Bitmap(width, height, config, colors.copyOf(width * height))
        }

        /** The fake decoders' output: [photo] subsampled by [sample], every pixel as it is. */
        internal fun decoded(photo: Photo, sample: Int): Bitmap {
            if (sample <= 1) return Bitmap(photo.width, photo.height, Config.ARGB_8888, photo.argb)
            val w = photo.width / sample
            val h = photo.height / sample
            val out = IntArray(w * h) { photo.argb[(it / w) * sample * photo.width + (it % w) * sample] }
            return Bitmap(w, h, Config.ARGB_8888, out)
        }
    }
}

class Rect

class ColorSpace private constructor(val name: Named) {
    enum class Named { SRGB, DISPLAY_P3 }

    companion object {
        fun get(name: Named): ColorSpace = ColorSpace(name)
    }
}

private fun stored(photo: FakePhoto): Photo {
    if (photo.tooLarge) {
        throw OutOfMemoryError("Failed to allocate a ${photo.width * photo.height * 4} byte allocation")
    }
    return Photo(photo.argb, photo.width, photo.height)
}

object BitmapFactory {
    class Options {
        var inJustDecodeBounds = false
        var outWidth = 0
        var outHeight = 0
        var inSampleSize = 1
        var inPreferredConfig: Bitmap.Config? = null
        var inPreferredColorSpace: ColorSpace? = null
    }

    /** Decodes the stored pixels: BitmapFactory does not apply the EXIF orientation. */
    fun decodeStream(stream: InputStream?, outPadding: Rect?, opts: Options?): Bitmap? {
        val photo = (stream as? PhotoStream)?.photo ?: return null
        if (opts != null && opts.inJustDecodeBounds) {
            opts.outWidth = photo.width
            opts.outHeight = photo.height
            return null
        }
        val sample = opts?.inSampleSize ?: 1
        FakeDevice.lastSampleSize = sample
        return Bitmap.decoded(stored(photo), sample)
    }
}

class ImageDecoder private constructor() {
    class Source internal constructor(internal val resolver: ContentResolver, internal val uri: Uri)
    class ImageInfo internal constructor(val size: Size)

    var allocator: Int = ALLOCATOR_DEFAULT
    private var sampleSize = 1

    fun setTargetColorSpace(colorSpace: ColorSpace) {}

    fun setTargetSampleSize(sampleSize: Int) {
        this.sampleSize = sampleSize
    }

    companion object {
        const val ALLOCATOR_DEFAULT = 0
        const val ALLOCATOR_SOFTWARE = 1

        fun createSource(cr: ContentResolver, uri: Uri): Source = Source(cr, uri)

        /**
         * The SDK's listener is the Java interface OnHeaderDecodedListener, which Kotlin 1.3
         * converts a lambda to; a function type takes the same lambda here.
         */
        fun decodeBitmap(src: Source, listener: (ImageDecoder, ImageInfo, Source) -> Unit): Bitmap {
            val photo = (src.resolver.openInputStream(src.uri) as PhotoStream).photo
            val turned = photo.orientation >= Orientation.TRANSPOSE
            val info = ImageInfo(
                if (turned) Size(photo.height, photo.width) else Size(photo.width, photo.height)
            )
            val decoder = ImageDecoder()
            listener(decoder, info, src)
            if (decoder.allocator != ALLOCATOR_SOFTWARE) {
                throw IOException("fake: a hardware bitmap has no getPixels")
            }
            FakeDevice.lastSampleSize = decoder.sampleSize
            return Bitmap.decoded(Orientation.upright(stored(photo), photo.orientation), decoder.sampleSize)
        }
    }
}
