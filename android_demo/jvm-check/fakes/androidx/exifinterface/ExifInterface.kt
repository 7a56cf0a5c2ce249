// Fake of androidx.exifinterface.media.ExifInterface for the JVM tests: the orientation tag of
// the FakeDevice photo behind the stream.
package androidx.exifinterface.media

import android.content.PhotoStream
import java.io.InputStream

class ExifInterface(private val stream: InputStream) {
    fun getAttributeInt(tag: String, defaultValue: Int): Int =
        if (tag == TAG_ORIENTATION) (stream as PhotoStream).photo.orientation else defaultValue

    companion object {
        const val TAG_ORIENTATION = "Orientation"
        const val ORIENTATION_NORMAL = 1
    }
}
