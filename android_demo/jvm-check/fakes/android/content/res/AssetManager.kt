// Fake of android.content.res.AssetManager for the JVM tests: the APK's assets are the files
// under FakeDevice.assets; reading one waits while FakeDevice.assetsGate is closed.
package android.content.res

import java.io.File
import java.io.InputStream
import java.util.concurrent.TimeUnit
import tfstyle.fake.FakeDevice

class AssetManager(private val root: File) {
    /** Throws java.io.FileNotFoundException (an IOException) for a missing asset, as the SDK. */
    fun open(fileName: String): InputStream {
        FakeDevice.assetsGate?.await(10, TimeUnit.SECONDS)
        return File(root, fileName).inputStream()
    }
}
