// The StateFlow API the app uses (kotlinx.coroutines 1.3.6+), for the JVM tests, which have
// Debian's kotlinx.coroutines 1.0: a thread-safe value holder; collecting is not faked (the
// activity, which collects, is not compiled on the JVM).
package kotlinx.coroutines.flow

import java.util.concurrent.atomic.AtomicReference

interface StateFlow<out T> {
    val value: T
}

interface MutableStateFlow<T> : StateFlow<T> {
    override var value: T
    fun compareAndSet(expect: T, update: T): Boolean
}

private class StateFlowImpl<T>(initial: T) : MutableStateFlow<T> {
    private val ref = AtomicReference(initial)
    override var value: T
        get() = ref.get()
        set(v) = ref.set(v)

    override fun compareAndSet(expect: T, update: T): Boolean = ref.compareAndSet(expect, update)
}

private class ReadonlyStateFlow<T>(private val flow: StateFlow<T>) : StateFlow<T> {
    override val value: T
        get() = flow.value
}

fun <T> MutableStateFlow(value: T): MutableStateFlow<T> = StateFlowImpl(value)

fun <T> MutableStateFlow<T>.asStateFlow(): StateFlow<T> = ReadonlyStateFlow(this)

inline fun <T> MutableStateFlow<T>.update(function: (T) -> T) {
    while (true) {
        val prev = value
        if (compareAndSet(prev, function(prev))) return
    }
}
