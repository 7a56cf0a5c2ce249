// Translator's accelerator choice on the fake LiteRT (jvm-check/fakes/litert/LiteRt.kt).
package dev.tfstyle.demo

import android.content.res.AssetManager
import com.google.ai.edge.litert.Accelerator
import com.google.ai.edge.litert.FakeLiteRt
import java.io.File
import org.junit.After
import org.junit.Assert.assertArrayEquals
import org.junit.Assert.assertEquals
import org.junit.Assert.assertNull
import org.junit.Assert.assertTrue
import org.junit.Before
import org.junit.Test

class TranslatorTest {
    private lateinit var root: File
    private lateinit var assets: AssetManager
    private val photo = TestModels.photo(6, 5)

    @Before
    fun setUp() {
        FakeLiteRt.reset()
        root = TestModels.assets()
        assets = AssetManager(root)
    }

    @After
    fun tearDown() {
        root.deleteRecursively()
    }

    private fun open(entry: ModelEntry, preferGpu: Boolean): Translator =
        Translator.open(assets, entry, preferGpu, TestModels.tensor(photo, entry), cpuThreads = 3)

    private fun floats(data: TensorData) = (data as TensorData.Floats).values

    /** The tensors of every warm-up run are the photo's, not zeros. */
    private fun assertWarmUpsRanThePhoto(entry: ModelEntry) {
        val expected = TestModels.tensor(photo, entry)
        assertTrue(FakeLiteRt.runs.isNotEmpty())
        for (run in FakeLiteRt.runs) {
            when (expected) {
                is TensorData.Floats -> assertArrayEquals(expected.values, run.floats, 0f)
                is TensorData.Bytes -> assertArrayEquals(expected.values, run.bytes)
            }
        }
    }

    @Test
    fun cpuWhenTheGpuIsNotAskedFor() {
        val t = open(TestModels.float16, preferGpu = false)
        assertEquals(Accelerator.CPU, t.choice.accelerator)
        assertEquals("CPU (XNNPACK, 3 threads)", t.choice.label)
        assertEquals(listOf(setOf(Accelerator.CPU)), FakeLiteRt.compiles.map { it.accelerators })
        assertEquals(3, FakeLiteRt.compiles.single().cpuThreads)
        assertEquals("models/emotion_AtoB_float16.tflite", FakeLiteRt.compiles.single().assetName)
        assertWarmUpsRanThePhoto(TestModels.float16)
        t.close()
        assertTrue(FakeLiteRt.open.isEmpty())
    }

    @Test
    fun gpuKeptWhenItsOutputAgreesWithTheCpus() {
        FakeLiteRt.gpuOutputError = 0.001f // 66 dB
        val t = open(TestModels.float16, preferGpu = true)
        assertEquals(Accelerator.GPU, t.choice.accelerator)
        assertNull(t.choice.note)
        assertEquals(20 * Math.log10(2 / 0.001), t.choice.gpuAgreementDb!!, 0.01)
        assertTrue(t.choice.label, t.choice.label.startsWith("GPU, every operator (66.0 dB against the CPU"))
        // compiled for the GPU alone (LiteRT then refuses a model it cannot run whole) and
        // for the CPU, the reference; both ran the photo
        assertEquals(listOf(setOf(Accelerator.GPU), setOf(Accelerator.CPU)),
            FakeLiteRt.compiles.map { it.accelerators })
        assertEquals(listOf(true, false), FakeLiteRt.runs.map { it.gpu })
        assertWarmUpsRanThePhoto(TestModels.float16)
        val out = floats(t.run(TestModels.tensor(photo, TestModels.float16)))
        assertTrue(FakeLiteRt.runs.last().gpu)
        val x = floats(TestModels.tensor(photo, TestModels.float16))
        assertArrayEquals(FloatArray(x.size) { 1f - x[it] / 127.5f + 0.001f }, out, 1e-6f)
        t.close()
        assertTrue("the CPU reference and the translator are closed", FakeLiteRt.open.isEmpty())
    }

    @Test
    fun cpuWhenTheGpusOutputDiffers() {
        FakeLiteRt.gpuOutputError = 0.05f // 32 dB, beyond the float16 threshold of 40 dB
        val t = open(TestModels.float16, preferGpu = true)
        assertEquals(Accelerator.CPU, t.choice.accelerator)
        assertEquals("CPU (XNNPACK, 3 threads); the GPU's output differs from the CPU's " +
            "(32.0 dB < 40 dB)", t.choice.label)
        t.run(TestModels.tensor(photo, TestModels.float16))
        assertTrue(!FakeLiteRt.runs.last().gpu)
        t.close()
        assertTrue(FakeLiteRt.open.isEmpty())
    }

    @Test
    fun cpuWhenTheGpuComputesNaNs() {
        FakeLiteRt.gpuOutputError = Float.NaN
        val t = open(TestModels.float16, preferGpu = true)
        assertEquals("CPU (XNNPACK, 3 threads); the GPU's output is not a number", t.choice.label)
        t.close()
        assertTrue(FakeLiteRt.open.isEmpty())
    }

    @Test
    fun aModelTheGpuRunsOnlyInPartIsNotLabelledGpu() {
        FakeLiteRt.gpuRunsEveryOp = false
        val t = open(TestModels.float16, preferGpu = true)
        assertEquals(Accelerator.CPU, t.choice.accelerator)
        assertTrue(t.choice.label, t.choice.label.startsWith("CPU (XNNPACK, 3 threads); " +
            "the GPU cannot run this model (Some ops are not accelerated."))
        assertTrue(FakeLiteRt.compiles.none { it.accelerators == setOf(Accelerator.GPU, Accelerator.CPU) })
        t.close()
        assertTrue(FakeLiteRt.open.isEmpty())
    }

    @Test
    fun cpuWhenTheDeviceHasNoGpu() {
        FakeLiteRt.accelerators = setOf(Accelerator.CPU)
        val t = open(TestModels.float16, preferGpu = true)
        assertEquals("CPU (XNNPACK, 3 threads); no GPU accelerator on this device", t.choice.label)
        assertEquals(listOf(setOf(Accelerator.CPU)), FakeLiteRt.compiles.map { it.accelerators })
        t.close()
        assertTrue(FakeLiteRt.open.isEmpty())
    }

    @Test
    fun aGpuThatCompilesButCannotRunFallsBack() {
        FakeLiteRt.gpuRunError = "OpenCL: CL_OUT_OF_RESOURCES"
        val t = open(TestModels.float16, preferGpu = true)
        assertEquals("CPU (XNNPACK, 3 threads); the GPU cannot run this model " +
            "(OpenCL: CL_OUT_OF_RESOURCES)", t.choice.label)
        assertEquals(1, FakeLiteRt.open.count { it is com.google.ai.edge.litert.CompiledModel })
        t.close()
        assertTrue(FakeLiteRt.open.isEmpty())
    }

    @Test
    fun int8ModelsRunOnTheCpu() {
        val t = open(TestModels.int8, preferGpu = true)
        assertEquals("CPU (XNNPACK, 3 threads); int8 models run on the CPU", t.choice.label)
        assertWarmUpsRanThePhoto(TestModels.int8)
        t.close()
    }

    @Test
    fun aMissingModelFileFailsAndLeavesNothingOpen() {
        File(root, TestModels.float16.assetPath).delete()
        try {
            open(TestModels.float16, preferGpu = true)
            throw AssertionError("expected the missing asset to fail")
        } catch (e: java.io.IOException) {
            assertTrue(e.toString(), e.toString().contains("emotion_AtoB_float16.tflite"))
        }
        assertTrue(FakeLiteRt.open.isEmpty())
    }

    @Test
    fun psnrIsTheExportChecksPsnr() {
        val zeros = FloatArray(12)
        assertEquals(100.0, Translator.psnr(zeros, zeros.copyOf()), 0.0)
        assertEquals(20 * Math.log10(255.0), Translator.psnr(zeros, FloatArray(12) { 1f }), 1e-9)
        // MSE 0.25 over half the pixels: 10 log10(255^2 / 0.125)
        val half = FloatArray(12) { if (it % 2 == 0) 0.5f else 0f }
        assertEquals(10 * Math.log10(255.0 * 255.0 / 0.125), Translator.psnr(zeros, half), 1e-9)
    }
}
