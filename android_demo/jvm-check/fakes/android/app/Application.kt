// Fake of android.app.Application for the JVM tests (jvm-check/fakes/FakeDevice.kt).
package android.app

import android.content.Context

open class Application : Context()
