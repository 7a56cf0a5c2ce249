// The phone the fakes of jvm-check/fakes/ stand for, set up by the JVM tests: what each
// content:// URI holds, the folder the APK's assets are read from, the main thread. Not part
// of the Android build.
package tfstyle.fake

import android.net.Uri
import java.io.File
import java.util.concurrent.CountDownLatch
import java.util.concurrent.Executors
import kotlinx.coroutines.asCoroutineDispatcher

/** A photo as a content provider would hand it over: stored pixels and EXIF orientation. */
class FakePhoto(
    val width: Int,
    val height: Int,
    val argb: IntArray,
    val orientation: Int = 1,
    /** decoding it throws OutOfMemoryError, as a photo too large for the heap does */
    val tooLarge: Boolean = false
)

object FakeDevice {
    /** assets/ of the APK */
    var assets: File = File("assets")
    /** while not null and not counted down, reading an asset waits (a slow first load) */
    var assetsGate: CountDownLatch? = null
    val photos = HashMap<Uri, FakePhoto>()
    /** the sample size the app last asked a decoder for */
    var lastSampleSize = 0
    /** the app's string resources by id (R.string), generated from res/values/strings.xml */
    val strings: Map<Int, String> = APP_STRINGS
    val warnings = ArrayList<String>()

    /** Android's main thread: one thread, as viewModelScope's Dispatchers.Main.immediate. */
    val main = Executors.newSingleThreadExecutor { r -> Thread(r, "main").apply { isDaemon = true } }
        .asCoroutineDispatcher()

    fun reset() {
        photos.clear()
        lastSampleSize = 0
        assetsGate = null
        warnings.clear()
        android.os.Build.VERSION.SDK_INT = 35
    }
}
