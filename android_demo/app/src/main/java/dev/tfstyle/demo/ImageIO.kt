package dev.tfstyle.demo

import android.content.ContentResolver
import android.content.ContentValues
import android.content.Context
import android.graphics.Bitmap
import android.graphics.BitmapFactory
import android.graphics.ColorSpace
import android.graphics.ImageDecoder
import android.net.Uri
import android.os.Build
import android.os.Environment
import android.provider.MediaStore
import androidx.annotation.RequiresApi
import androidx.core.content.FileProvider
import androidx.exifinterface.media.ExifInterface
import java.io.File
import java.io.IOException

/** Reading photos, saving results to the gallery and handing them to other apps. */
object ImageIO {
    /** cacheDir subfolders, as res/xml/file_paths.xml declares them. */
    const val CAMERA_DIR = "camera"
    const val SHARE_DIR = "shared"
    private const val SAVE_FOLDER = "tfstyle"

    /** The FileProvider authority of AndroidManifest.xml. */
    fun authority(context: Context): String = context.packageName + ".fileprovider"

    /**
     * Decodes [uri] upright (EXIF orientation applied) into sRGB ARGB pixels. Large photos are
     * subsampled by the decoder by a power of two, as long as the shorter side stays at least
     * 2 * [modelSize]; Preprocessing takes it from there.
     */
    fun decode(context: Context, uri: Uri, modelSize: Int): Photo {
        val resolver = context.contentResolver
        if (Build.VERSION.SDK_INT >= Build.VERSION_CODES.P) {
            // ImageDecoder applies the EXIF orientation itself.
            return pixelsOf(decodeWithImageDecoder(resolver, uri, modelSize))
        }
        val stored = pixelsOf(decodeWithBitmapFactory(resolver, uri, modelSize))
        return Orientation.upright(stored, exifOrientation(resolver, uri))
    }

    /** The unpremultiplied sRGB ARGB pixels of [decoded]. */
    private fun pixelsOf(decoded: Bitmap): Photo {
        val bitmap = if (decoded.config == Bitmap.Config.ARGB_8888) {
            decoded
        } else {
            decoded.copy(Bitmap.Config.ARGB_8888, false)
                ?: throw IOException("cannot convert the image to ARGB_8888")
        }
        val width = bitmap.width
        val height = bitmap.height
        val argb = IntArray(width * height)
        bitmap.getPixels(argb, 0, width, 0, 0, width, height) // unpremultiplied, sRGB
        return Photo(argb, width, height)
    }

    /** The largest power of two that keeps the shorter side at least 2 * modelSize. */
    fun sampleSize(width: Int, height: Int, modelSize: Int): Int {
        val shortSide = if (width < height) width else height
        var sample = 1
        while (shortSide / (sample * 2) >= 2 * modelSize) sample *= 2
        return sample
    }

    @RequiresApi(Build.VERSION_CODES.P)
    private fun decodeWithImageDecoder(resolver: ContentResolver, uri: Uri, modelSize: Int):
        Bitmap {
        val source = ImageDecoder.createSource(resolver, uri)
        return ImageDecoder.decodeBitmap(source) { decoder, info, _ ->
            decoder.allocator = ImageDecoder.ALLOCATOR_SOFTWARE // getPixels needs a CPU bitmap
            decoder.setTargetColorSpace(ColorSpace.get(ColorSpace.Named.SRGB))
            decoder.setTargetSampleSize(sampleSize(info.size.width, info.size.height, modelSize))
        }
    }

    private fun decodeWithBitmapFactory(resolver: ContentResolver, uri: Uri, modelSize: Int):
        Bitmap {
        val bounds = BitmapFactory.Options().apply { inJustDecodeBounds = true }
        openStream(resolver, uri).use { BitmapFactory.decodeStream(it, null, bounds) }
        if (bounds.outWidth <= 0 || bounds.outHeight <= 0) {
            throw IOException("not an image this device can decode")
        }
        val options = BitmapFactory.Options().apply {
            inSampleSize = sampleSize(bounds.outWidth, bounds.outHeight, modelSize)
            inPreferredConfig = Bitmap.Config.ARGB_8888
            inPreferredColorSpace = ColorSpace.get(ColorSpace.Named.SRGB)
        }
        return openStream(resolver, uri).use { BitmapFactory.decodeStream(it, null, options) }
            ?: throw IOException("not an image this device can decode")
    }

    /** The EXIF orientation tag of [uri] (Orientation.NORMAL when it has none). */
    private fun exifOrientation(resolver: ContentResolver, uri: Uri): Int = try {
        openStream(resolver, uri).use {
            ExifInterface(it).getAttributeInt(
                ExifInterface.TAG_ORIENTATION, ExifInterface.ORIENTATION_NORMAL
            )
        }
    } catch (e: IOException) {
        ExifInterface.ORIENTATION_NORMAL
    }

    private fun openStream(resolver: ContentResolver, uri: Uri) =
        resolver.openInputStream(uri) ?: throw IOException("cannot open $uri")

    /** An opaque ARGB_8888 bitmap of [argb] pixels. */
    fun bitmapOf(argb: IntArray, width: Int, height: Int): Bitmap =
        Bitmap.createBitmap(argb, width, height, Bitmap.Config.ARGB_8888)

    /** A fresh content:// URI the camera app writes its picture to (cacheDir/camera/). */
    fun cameraUri(context: Context): Uri {
        val dir = File(context.cacheDir, CAMERA_DIR)
        if (!dir.isDirectory && !dir.mkdirs()) throw IOException("cannot create $dir")
        val file = File(dir, "capture.jpg")
        file.delete()
        return FileProvider.getUriForFile(context, authority(context), file)
    }

    /**
     * Saves [bitmap] as a PNG in the shared Pictures collection: Pictures/tfstyle/ from
     * Android 10 on (no permission needed), Pictures/ before (needs WRITE_EXTERNAL_STORAGE).
     */
    fun saveToGallery(context: Context, bitmap: Bitmap, displayName: String): Uri {
        val resolver = context.contentResolver
        val values = ContentValues().apply {
            put(MediaStore.Images.Media.DISPLAY_NAME, displayName)
            put(MediaStore.Images.Media.MIME_TYPE, "image/png")
            if (Build.VERSION.SDK_INT >= Build.VERSION_CODES.Q) {
                put(MediaStore.Images.Media.RELATIVE_PATH,
                    Environment.DIRECTORY_PICTURES + "/" + SAVE_FOLDER)
                put(MediaStore.Images.Media.IS_PENDING, 1)
            }
        }
        val collection = if (Build.VERSION.SDK_INT >= Build.VERSION_CODES.Q) {
            MediaStore.Images.Media.getContentUri(MediaStore.VOLUME_EXTERNAL_PRIMARY)
        } else {
            MediaStore.Images.Media.EXTERNAL_CONTENT_URI
        }
        val uri = resolver.insert(collection, values)
            ?: throw IOException("the media store did not create an entry")
        try {
            val out = resolver.openOutputStream(uri) ?: throw IOException("cannot write $uri")
            out.use {
                if (!bitmap.compress(Bitmap.CompressFormat.PNG, 100, it)) {
                    throw IOException("PNG encoding failed")
                }
            }
            if (Build.VERSION.SDK_INT >= Build.VERSION_CODES.Q) {
                val done = ContentValues().apply { put(MediaStore.Images.Media.IS_PENDING, 0) }
                resolver.update(uri, done, null, null)
            }
        } catch (e: Exception) {
            resolver.delete(uri, null, null)
            throw e
        }
        return uri
    }

    /** Writes [bitmap] to cacheDir/shared/[fileName] and returns its content:// URI. */
    fun shareableUri(context: Context, bitmap: Bitmap, fileName: String): Uri {
        val dir = File(context.cacheDir, SHARE_DIR)
        if (!dir.isDirectory && !dir.mkdirs()) throw IOException("cannot create $dir")
        val file = File(dir, fileName)
        file.outputStream().use {
            if (!bitmap.compress(Bitmap.CompressFormat.PNG, 100, it)) {
                throw IOException("PNG encoding failed")
            }
        }
        return FileProvider.getUriForFile(context, authority(context), file)
    }
}
