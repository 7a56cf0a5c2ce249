// Fakes of androidx.lifecycle's ViewModel, AndroidViewModel and viewModelScope for the JVM
// tests. viewModelScope runs on FakeDevice.main, one thread as Android's main thread; clear()
// is what the framework does when the ViewModel's owner goes away.
package androidx.lifecycle

import android.app.Application
import kotlinx.coroutines.CoroutineScope
import kotlinx.coroutines.SupervisorJob
import tfstyle.fake.FakeDevice

abstract class ViewModel {
    private val job = SupervisorJob()
    internal val scope = CoroutineScope(job + FakeDevice.main)

    protected open fun onCleared() {}

    fun clear() {
        job.cancel()
        onCleared()
    }
}

open class AndroidViewModel(private val application: Application) : ViewModel() {
    @Suppress("UNCHECKED_CAST")
    fun <T : Application> getApplication(): T = application as T
}

val ViewModel.viewModelScope: CoroutineScope
    get() = scope
