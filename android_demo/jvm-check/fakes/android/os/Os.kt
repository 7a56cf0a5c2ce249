// Fakes of android.os for the JVM tests; the tests set Build.VERSION.SDK_INT.
package android.os

object Build {
    object VERSION {
        var SDK_INT: Int = 35
    }

    object VERSION_CODES {
        const val P = 28
        const val Q = 29
    }
}

object SystemClock {
    fun elapsedRealtimeNanos(): Long = System.nanoTime()
}

object Environment {
    const val DIRECTORY_PICTURES = "Pictures"
}
