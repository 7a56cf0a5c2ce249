package dev.tfstyle.demo

import android.app.Application
import android.graphics.Bitmap
import android.net.Uri
import android.os.SystemClock
import androidx.lifecycle.AndroidViewModel
import androidx.lifecycle.viewModelScope
import java.io.IOException
import java.util.concurrent.Executors
import kotlinx.coroutines.CancellationException
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.Job
import kotlinx.coroutines.asCoroutineDispatcher
import kotlinx.coroutines.flow.MutableStateFlow
import kotlinx.coroutines.flow.StateFlow
import kotlinx.coroutines.flow.asStateFlow
import kotlinx.coroutines.flow.update
import kotlinx.coroutines.launch
import kotlinx.coroutines.withContext

/** One translated photo and how it was made. */
class TranslationResult(
    val entry: ModelEntry,
    /** the S x S image the model was given (centre square, resized) */
    val input: Bitmap,
    val output: Bitmap,
    val preMs: Double,
    /** writing the input tensor, running the model, reading the output tensor */
    val inferenceMs: Double,
    val postMs: Double,
    val choice: AcceleratorChoice,
    /** load + compile + warm-up, when this translation had to (re)create the model */
    val compileMs: Double?
)

data class UiState(
    val catalog: ModelCatalog? = null,
    val catalogError: String? = null,
    val selected: Int = 0,
    val preferGpu: Boolean = true,
    val busy: Boolean = false,
    val result: TranslationResult? = null,
    val error: String? = null
)

/**
 * Holds the models, the current photo and the compiled model across configuration changes.
 * Decoding runs on Dispatchers.IO, pre- and postprocessing on Dispatchers.Default, and every
 * LiteRT call on one dedicated thread (a GPU context belongs to the thread that made it).
 */
class MainViewModel(application: Application) : AndroidViewModel(application) {

    private val _state = MutableStateFlow(UiState())
    val state: StateFlow<UiState> = _state.asStateFlow()

    private val litertExecutor = Executors.newSingleThreadExecutor { r -> Thread(r, "litert") }
    private val litertDispatcher = litertExecutor.asCoroutineDispatcher()

    // Touched only on litertDispatcher.
    private var translator: Translator? = null
    private var translatorKey: String? = null

    private var photo: Photo? = null
    private var job: Job? = null
    private var generation = 0

    /**
     * A photo that came before models.json was read (after process death the camera's or
     * the picker's result is delivered while the catalog is still loading); translated as
     * soon as the catalog is there. Touched only on the main thread.
     */
    private var pendingPhoto: Uri? = null

    init {
        viewModelScope.launch { loadCatalog() }
    }

    private suspend fun loadCatalog() {
        val app = getApplication<Application>()
        val path = ModelCatalog.ASSET_DIR + "/" + ModelCatalog.FILE_NAME
        try {
            val catalog = withContext(Dispatchers.IO) {
                val text = app.assets.open(path).bufferedReader().use { it.readText() }
                ModelCatalog.parse(text)
            }
            _state.update { it.copy(catalog = catalog, selected = defaultSelection(catalog)) }
        } catch (e: IOException) {
            _state.update { it.copy(catalogError = "assets/$path: ${e.message}") }
        } catch (e: CatalogException) {
            _state.update { it.copy(catalogError = e.message) }
        }
        val waiting = pendingPhoto ?: return
        pendingPhoto = null
        if (_state.value.catalog != null) {
            onPhoto(waiting)
        } else {
            _state.update { it.copy(busy = false) } // no models: the status says why
        }
    }

    /** float16 first (half the size of float32, GPU-friendly), else the first entry. */
    private fun defaultSelection(catalog: ModelCatalog): Int {
        val index = catalog.entries.indexOfFirst { it.variant == "float16" }
        return if (index >= 0) index else 0
    }

    fun selectModel(index: Int) {
        val catalog = _state.value.catalog ?: return
        if (index == _state.value.selected || index !in catalog.entries.indices) return
        _state.update { it.copy(selected = index) }
        retranslate()
    }

    fun setPreferGpu(preferGpu: Boolean) {
        if (preferGpu == _state.value.preferGpu) return
        _state.update { it.copy(preferGpu = preferGpu) }
        retranslate()
    }

    /** A photo from the gallery or the camera. */
    fun onPhoto(uri: Uri) {
        val catalog = _state.value.catalog
        if (catalog == null) {
            if (_state.value.catalogError == null) {
                pendingPhoto = uri // the newest photo wins
                _state.update { it.copy(busy = true, error = null) }
            }
            return
        }
        start {
            val app = getApplication<Application>()
            val decoded = try {
                withContext(Dispatchers.IO) { ImageIO.decode(app, uri, catalog.size) }
            } catch (e: CancellationException) {
                throw e
            } catch (e: OutOfMemoryError) {
                _state.update { it.copy(error = app.getString(R.string.photo_too_large)) }
                return@start
            } catch (e: Exception) {
                _state.update {
                    it.copy(error = app.getString(R.string.decode_failed, e.message ?: e.toString()))
                }
                return@start
            }
            photo = decoded
            translate()
        }
    }

    private fun retranslate() {
        if (photo != null) start { translate() }
    }

    /** Runs [block] as the one current job, replacing any earlier one, with busy shown. */
    private fun start(block: suspend () -> Unit) {
        job?.cancel()
        val mine = ++generation
        _state.update { it.copy(busy = true, error = null) }
        job = viewModelScope.launch {
            try {
                block()
            } finally {
                if (mine == generation) _state.update { it.copy(busy = false) }
            }
        }
    }

    private suspend fun translate() {
        val current = _state.value
        val catalog = current.catalog ?: return
        val source = photo ?: return
        val entry = catalog.entries[current.selected]
        val preferGpu = current.preferGpu
        val app = getApplication<Application>()
        try {
            var t = SystemClock.elapsedRealtimeNanos()
            val pixels = withContext(Dispatchers.Default) {
                Preprocessing.toModelPixels(source.argb, source.width, source.height, catalog.size)
            }
            val tensor = withContext(Dispatchers.Default) { Preprocessing.toTensor(pixels, entry.input) }
            val preMs = msSince(t)

            val run = withContext(litertDispatcher) { runModel(entry, preferGpu, tensor) }

            t = SystemClock.elapsedRealtimeNanos()
            val size = catalog.size
            val images = withContext(Dispatchers.Default) {
                val outPixels = Preprocessing.fromTensor(run.output, entry.output)
                Pair(
                    ImageIO.bitmapOf(Preprocessing.toArgb(pixels), size, size),
                    ImageIO.bitmapOf(Preprocessing.toArgb(outPixels), size, size)
                )
            }
            val result = TranslationResult(
                entry, images.first, images.second, preMs, run.inferenceMs, msSince(t),
                run.choice, run.compileMs
            )
            _state.update { it.copy(result = result) }
        } catch (e: CancellationException) {
            throw e
        } catch (e: OutOfMemoryError) {
            _state.update { it.copy(error = app.getString(R.string.photo_too_large)) }
        } catch (e: Exception) {
            _state.update {
                it.copy(error = app.getString(R.string.translate_failed, e.message ?: e.toString()))
            }
        }
    }

    private class ModelRun(
        val output: TensorData,
        val inferenceMs: Double,
        val choice: AcceleratorChoice,
        val compileMs: Double?
    )

    /**
     * On litertDispatcher: (re)compiles when the model or the accelerator choice changed,
     * with [tensor] as the warm-up input that the GPU's output is checked on.
     */
    private fun runModel(entry: ModelEntry, preferGpu: Boolean, tensor: TensorData): ModelRun {
        val key = entry.file + (if (preferGpu) ":gpu" else ":cpu")
        var compileMs: Double? = null
        var current = translator
        if (current == null || translatorKey != key) {
            current?.close()
            translator = null
            translatorKey = null
            current = Translator.open(getApplication<Application>().assets, entry, preferGpu, tensor)
            translator = current
            translatorKey = key
            compileMs = current.compileMs
        }
        val t = SystemClock.elapsedRealtimeNanos()
        val output = current.run(tensor)
        return ModelRun(output, msSince(t), current.choice, compileMs)
    }

    override fun onCleared() {
        litertExecutor.execute {
            translator?.close()
            translator = null
        }
        litertExecutor.shutdown()
    }

    private fun msSince(startNanos: Long): Double =
        (SystemClock.elapsedRealtimeNanos() - startNanos) / 1e6
}
