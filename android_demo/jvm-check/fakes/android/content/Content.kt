// Fakes of android.content for the JVM tests: the members the app uses, with the SDK's
// names; the content resolver serves FakeDevice.photos.
package android.content

import android.content.res.AssetManager
import android.net.Uri
import java.io.File
import java.io.FileNotFoundException
import java.io.InputStream
import java.io.OutputStream
import tfstyle.fake.FakeDevice
import tfstyle.fake.FakePhoto

open class Context {
    val assets: AssetManager
        get() = AssetManager(FakeDevice.assets)
    val contentResolver: ContentResolver = ContentResolver()
    val cacheDir: File
        get() = File(FakeDevice.assets.parentFile, "cache")
    val packageName: String = "dev.tfstyle.demo"

    fun getString(resId: Int): String =
        FakeDevice.strings[resId] ?: throw IllegalArgumentException("no string resource $resId")

    fun getString(resId: Int, vararg formatArgs: Any): String =
        String.format(getString(resId), *formatArgs)
}

/** What ContentResolver.openInputStream gives for a FakeDevice photo. */
class PhotoStream(val photo: FakePhoto) : InputStream() {
    override fun read(): Int = -1
}

class ContentResolver {
    fun openInputStream(uri: Uri): InputStream? {
        val photo = FakeDevice.photos[uri] ?: throw FileNotFoundException("no such photo: $uri")
        return PhotoStream(photo)
    }

    fun openOutputStream(uri: Uri): OutputStream? = throw UnsupportedOperationException("fake")

    fun insert(url: Uri, values: ContentValues?): Uri? = throw UnsupportedOperationException("fake")

    fun update(uri: Uri, values: ContentValues?, where: String?, selectionArgs: Array<String>?): Int =
        throw UnsupportedOperationException("fake")

    fun delete(url: Uri, where: String?, selectionArgs: Array<String>?): Int =
        throw UnsupportedOperationException("fake")
}

class ContentValues {
    private val values = HashMap<String, Any?>()
    fun put(key: String, value: String?) {
        values[key] = value
    }

    fun put(key: String, value: Int?) {
        values[key] = value
    }
}
