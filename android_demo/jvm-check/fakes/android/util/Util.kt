// Fakes of android.util for the JVM tests: Log.w is recorded in FakeDevice.warnings.
package android.util

import tfstyle.fake.FakeDevice

class Size(val width: Int, val height: Int)

object Log {
    fun w(tag: String, msg: String, tr: Throwable): Int {
        FakeDevice.warnings.add("$tag: $msg: $tr")
        return 0
    }
}
