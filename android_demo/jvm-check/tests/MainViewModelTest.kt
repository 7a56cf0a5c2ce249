// MainViewModel's photo flow: the real view model, ImageIO, Translator, Preprocessing and
// ModelCatalog on the fakes of jvm-check/fakes (the main thread is FakeDevice.main).
package dev.tfstyle.demo

import android.app.Application
import android.net.Uri
import com.google.ai.edge.litert.Accelerator
import com.google.ai.edge.litert.FakeLiteRt
import java.io.File
import java.util.concurrent.CountDownLatch
import kotlinx.coroutines.runBlocking
import kotlinx.coroutines.withContext
import org.junit.After
import org.junit.Assert.assertArrayEquals
import org.junit.Assert.assertEquals
import org.junit.Assert.assertNull
import org.junit.Assert.assertTrue
import org.junit.Before
import org.junit.Test
import tfstyle.fake.FakeDevice
import tfstyle.fake.FakePhoto

class MainViewModelTest {
    private lateinit var root: File
    private val viewModels = ArrayList<MainViewModel>()
    private val app = Application()

    @Before
    fun setUp() {
        FakeDevice.reset()
        FakeLiteRt.reset()
        root = TestModels.assets()
        FakeDevice.assets = root
    }

    @After
    fun tearDown() {
        for (vm in viewModels) onMain { vm.clear() }
        onMain { } // the view model's clean-up has been handed to its LiteRT thread
        waitUntil("every LiteRT handle is closed") { FakeLiteRt.open.isEmpty() }
        root.deleteRecursively()
    }

    private fun <T> onMain(block: () -> T): T = runBlocking { withContext(FakeDevice.main) { block() } }

    private fun newViewModel(): MainViewModel = onMain { MainViewModel(app) }.also { viewModels.add(it) }

    private fun waitUntil(what: String, condition: () -> Boolean) {
        val deadline = System.nanoTime() + 10_000_000_000L
        while (!condition()) {
            if (System.nanoTime() > deadline) throw AssertionError("timed out waiting until $what")
            Thread.sleep(2)
        }
    }

    private fun awaitIdle(vm: MainViewModel, what: String, condition: (UiState) -> Boolean): UiState {
        waitUntil(what) { vm.state.value.let { !it.busy && condition(it) } }
        return vm.state.value
    }

    private fun addPhoto(name: String, photo: FakePhoto): Uri {
        val uri = Uri.parse("content://photos/$name")
        FakeDevice.photos[uri] = photo
        return uri
    }

    private fun addPhoto(name: String, w: Int, h: Int, seed: Int): Uri {
        val p = TestModels.photo(w, h, seed)
        return addPhoto(name, FakePhoto(w, h, p.argb))
    }

    /** The app's input image for a photo: its centre square at the model size. */
    private fun modelInput(w: Int, h: Int, seed: Int): IntArray {
        val p = TestModels.photo(w, h, seed)
        return Preprocessing.toArgb(Preprocessing.toModelPixels(p.argb, w, h, TestModels.SIZE))
    }

    private fun pixels(bitmap: android.graphics.Bitmap): IntArray {
        val out = IntArray(bitmap.width * bitmap.height)
        bitmap.getPixels(out, 0, bitmap.width, 0, 0, bitmap.width, bitmap.height)
        return out
    }

    /** The fake network's output for an input image: its negative (255 - value). */
    private fun negative(argb: IntArray) = IntArray(argb.size) { argb[it] xor 0x00FFFFFF }

    @Test
    fun aPhotoIsTranslatedWithTheFloat16ModelOnTheGpu() {
        val vm = newViewModel()
        awaitIdle(vm, "the catalog is loaded") { it.catalog != null }
        val uri = addPhoto("a", 9, 7, seed = 1)
        onMain { vm.onPhoto(uri) }
        val state = awaitIdle(vm, "a result") { it.result != null }
        assertNull(state.error)
        val result = state.result!!
        assertEquals("float16", result.entry.variant)
        assertEquals(Accelerator.GPU, result.choice.accelerator)
        assertArrayEquals(modelInput(9, 7, 1), pixels(result.input))
        assertArrayEquals(negative(modelInput(9, 7, 1)), pixels(result.output))
        assertTrue(result.compileMs != null)
    }

    @Test
    fun aPhotoThatComesBeforeTheCatalogIsKeptAndTranslated() {
        val gate = CountDownLatch(1)
        FakeDevice.assetsGate = gate // models.json is read slowly, as after process death
        val vm = newViewModel()
        val first = addPhoto("camera", 8, 8, seed = 2)
        val second = addPhoto("picker", 10, 6, seed = 3)
        onMain { vm.onPhoto(first) }
        onMain { vm.onPhoto(second) } // the newest photo wins
        assertTrue("waiting for the catalog shows as busy", vm.state.value.busy)
        assertNull(vm.state.value.catalog)
        gate.countDown()
        val state = awaitIdle(vm, "the kept photo is translated") { it.result != null }
        assertNull(state.error)
        assertArrayEquals(modelInput(10, 6, 3), pixels(state.result!!.input))
        assertEquals(1, FakeLiteRt.compiles.count { it.accelerators == setOf(Accelerator.GPU) })
    }

    @Test
    fun aPhotoThatComesBeforeAMissingCatalogLeavesTheCatalogError() {
        File(root, "models/models.json").delete()
        val gate = CountDownLatch(1)
        FakeDevice.assetsGate = gate
        val vm = newViewModel()
        onMain { vm.onPhoto(addPhoto("a", 8, 8, seed = 0)) }
        gate.countDown()
        val state = awaitIdle(vm, "the load has failed") { it.catalogError != null }
        assertTrue(state.catalogError!!, state.catalogError!!.startsWith("assets/models/models.json: "))
        assertNull(state.result)
    }

    @Test
    fun aPhotoTooLargeForTheMemoryGivesAMessageAndTheNextPhotoWorks() {
        val vm = newViewModel()
        awaitIdle(vm, "the catalog is loaded") { it.catalog != null }
        val huge = addPhoto("huge", FakePhoto(4000, 3000, IntArray(0), tooLarge = true))
        onMain { vm.onPhoto(huge) }
        val state = awaitIdle(vm, "an error") { it.error != null }
        assertEquals(app.getString(R.string.photo_too_large), state.error)
        assertNull(state.result)
        onMain { vm.onPhoto(addPhoto("small", 6, 6, seed = 4)) }
        val next = awaitIdle(vm, "a result") { it.result != null }
        assertNull(next.error)
    }

    @Test
    fun aPhotoThatCannotBeReadGivesTheDecodeMessage() {
        val vm = newViewModel()
        awaitIdle(vm, "the catalog is loaded") { it.catalog != null }
        onMain { vm.onPhoto(Uri.parse("content://photos/gone")) }
        val state = awaitIdle(vm, "an error") { it.error != null }
        assertEquals(app.getString(R.string.decode_failed, "no such photo: content://photos/gone"),
            state.error)
    }

    @Test
    fun theGpuIsCheckedOnThePhotoAndTheCpuTakesOverWhenItDisagrees() {
        FakeLiteRt.gpuOutputError = 0.2f
        val vm = newViewModel()
        awaitIdle(vm, "the catalog is loaded") { it.catalog != null }
        onMain { vm.onPhoto(addPhoto("a", 7, 9, seed = 5)) }
        val result = awaitIdle(vm, "a result") { it.result != null }.result!!
        assertEquals(Accelerator.CPU, result.choice.accelerator)
        val label = result.choice.label
        assertTrue(label, label.contains("the GPU's output differs from the CPU's"))
        val photoTensor =
            TestModels.tensor(TestModels.photo(7, 9, 5), TestModels.float16) as TensorData.Floats
        val gpuRun = FakeLiteRt.runs.first { it.gpu }
        assertArrayEquals("the GPU warm-up ran the photo", photoTensor.values, gpuRun.floats, 0f)
        assertArrayEquals(negative(modelInput(7, 9, 5)), pixels(result.output))
    }

    @Test
    fun switchingModelAndAcceleratorRetranslatesTheSamePhoto() {
        val vm = newViewModel()
        awaitIdle(vm, "the catalog is loaded") { it.catalog != null }
        onMain { vm.onPhoto(addPhoto("a", 8, 5, seed = 6)) }
        awaitIdle(vm, "a result") { it.result != null }
        onMain { vm.setPreferGpu(false) }
        val cpu = awaitIdle(vm, "a CPU result") { it.result?.choice?.accelerator == Accelerator.CPU }
        assertEquals("CPU (XNNPACK, ${Translator.defaultCpuThreads()} threads)", cpu.result!!.choice.label)
        val int8 = TestModels.catalog.entries.indexOfFirst { it.variant == "int8" }
        onMain { vm.selectModel(int8) }
        val q = awaitIdle(vm, "an int8 result") { it.result?.entry?.variant == "int8" }.result!!
        // the fake network gives uint8 inputs back: the output is the input image
        assertArrayEquals(pixels(q.input), pixels(q.output))
        assertEquals(4, FakeLiteRt.compiles.size) // GPU + its CPU reference, CPU, int8 on the CPU
    }
}
