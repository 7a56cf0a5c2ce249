// Fake of LiteRT's Kotlin API (com.google.ai.edge.litert, the signatures of LiteRT 2.1.6's
// litert/kotlin/src/main/kotlin: Model.kt, Environment.kt, TensorBuffer.kt, Common.kt,
// LiteRtException.kt) for the JVM tests, with a phone set up by FakeLiteRt. Compiling follows
// the runtime (litert/runtime/compiled_model.cc): a model compiled for the GPU without the CPU
// fails when some operators are left to the CPU. The "network" maps float input x to
// 1 - x / 127.5 (a negative of the photo for pixel inputs) and uint8 / int8 input bytes to
// themselves; the GPU adds FakeLiteRt.gpuOutputError to every float it computes.
package com.google.ai.edge.litert

import android.content.res.AssetManager
import java.util.concurrent.atomic.AtomicBoolean

enum class Accelerator(val value: Int) {
    NONE(0),
    CPU(1),
    GPU(2),
    NPU(3)
}

class LiteRtException(message: String) : Exception(message)

abstract class JniHandle internal constructor() : AutoCloseable {
    private val destroyed = AtomicBoolean(false)

    init {
        FakeLiteRt.open.add(this)
    }

    protected fun assertNotDestroyed() {
        if (destroyed.get()) throw IllegalStateException("The handle has been destroyed.")
    }

    protected open fun destroy() {}

    final override fun close() {
        if (destroyed.compareAndSet(false, true)) {
            FakeLiteRt.open.remove(this)
            destroy()
        }
    }
}

class Environment private constructor() : JniHandle() {
    enum class Option(val value: Int) {
        CompilerCacheDir(18)
    }

    fun getAvailableAccelerators(): Set<Accelerator> {
        assertNotDestroyed()
        return FakeLiteRt.accelerators
    }

    companion object {
        fun create(options: Map<Option, String> = mapOf()): Environment = Environment()
    }
}

class TensorBuffer internal constructor() : JniHandle() {
    internal var floats = FloatArray(0)
    internal var bytes = ByteArray(0)

    fun writeFloat(data: FloatArray) {
        assertNotDestroyed()
        floats = data.copyOf()
    }

    fun writeInt8(data: ByteArray) {
        assertNotDestroyed()
        bytes = data.copyOf()
    }

    fun readFloat(): FloatArray {
        assertNotDestroyed()
        return floats.copyOf()
    }

    fun readInt8(): ByteArray {
        assertNotDestroyed()
        return bytes.copyOf()
    }
}

class CompiledModel private constructor(
    val assetName: String,
    internal val accelerators: Set<Accelerator>,
    private val env: Environment,
    private val envManaged: Boolean
) : JniHandle() {

    override fun destroy() {
        if (envManaged) env.close()
    }

    data class CpuOptions(
        val numThreads: Int? = null,
        val xnnPackFlags: Int? = null,
        val xnnPackWeightCachePath: String? = null
    )

    class Options(internal val accelerators: Set<Accelerator>) {
        constructor(vararg accelerators: Accelerator) : this(setOf(*accelerators))

        var cpuOptions: CpuOptions? = null

        companion object {
            val CPU = Options(Accelerator.CPU)
        }
    }

    fun createInputBuffer(inputName: String, signature: String = ""): TensorBuffer {
        assertNotDestroyed()
        return TensorBuffer()
    }

    fun createOutputBuffer(outputName: String, signature: String = ""): TensorBuffer {
        assertNotDestroyed()
        return TensorBuffer()
    }

    fun run(inputs: Map<String, TensorBuffer>, outputs: Map<String, TensorBuffer>, signature: String = "") {
        assertNotDestroyed()
        val input = inputs.values.single()
        val output = outputs.values.single()
        val gpu = Accelerator.GPU in accelerators
        FakeLiteRt.runs.add(FakeLiteRt.Run(assetName, gpu, input.floats.copyOf(), input.bytes.copyOf()))
        if (gpu && FakeLiteRt.gpuRunError != null) throw LiteRtException(FakeLiteRt.gpuRunError!!)
        val error = if (gpu) FakeLiteRt.gpuOutputError else 0f
        output.floats = FloatArray(input.floats.size) { 1f - input.floats[it] / 127.5f + error }
        output.bytes = input.bytes.copyOf()
    }

    companion object {
        fun create(
            assetManager: AssetManager,
            assetName: String,
            options: Options = Options.CPU,
            optionalEnv: Environment? = null
        ): CompiledModel {
            assetManager.open(assetName).close() // a missing asset fails as in LiteRT
            val wanted = options.accelerators
            FakeLiteRt.compiles.add(FakeLiteRt.Compile(assetName, wanted, options.cpuOptions?.numThreads))
            if (Accelerator.GPU in wanted) {
                if (Accelerator.GPU !in FakeLiteRt.accelerators) {
                    throw LiteRtException("Failed to compile: no GPU accelerator is registered")
                }
                FakeLiteRt.gpuCompileError?.let { throw LiteRtException(it) }
                if (!FakeLiteRt.gpuRunsEveryOp && Accelerator.CPU !in wanted) {
                    throw LiteRtException(
                        "Some ops are not accelerated. Add kLiteRtHwAcceleratorCpu to the " +
                            "compilation accelerator set to allow using the CPU to run those."
                    )
                }
            }
            return CompiledModel(assetName, wanted, optionalEnv ?: Environment.create(), optionalEnv == null)
        }
    }
}

/** The phone the fake LiteRT runs on, and what the app did with it. */
object FakeLiteRt {
    class Compile(val assetName: String, val accelerators: Set<Accelerator>, val cpuThreads: Int?)
    class Run(val assetName: String, val gpu: Boolean, val floats: FloatArray, val bytes: ByteArray)

    var accelerators: Set<Accelerator> = setOf(Accelerator.CPU, Accelerator.GPU)
    /** false: the GPU cannot take some operator of the models (a driver without MIRROR_PAD) */
    var gpuRunsEveryOp = true
    var gpuCompileError: String? = null
    var gpuRunError: String? = null
    var gpuOutputError = 0f

    val compiles = java.util.Collections.synchronizedList(ArrayList<Compile>())
    val runs = java.util.Collections.synchronizedList(ArrayList<Run>())
    /** handles (environments, models, buffers) not closed yet */
    val open: MutableSet<JniHandle> = java.util.Collections.synchronizedSet(HashSet<JniHandle>())

    fun reset() {
        accelerators = setOf(Accelerator.CPU, Accelerator.GPU)
        gpuRunsEveryOp = true
        gpuCompileError = null
        gpuRunError = null
        gpuOutputError = 0f
        compiles.clear()
        runs.clear()
        open.clear()
    }
}
