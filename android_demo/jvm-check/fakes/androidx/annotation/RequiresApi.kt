// Fake of androidx.annotation.RequiresApi for the JVM tests.
package androidx.annotation

annotation class RequiresApi(val value: Int = 1, val api: Int = 1)
