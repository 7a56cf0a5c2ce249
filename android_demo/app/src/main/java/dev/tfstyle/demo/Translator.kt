package dev.tfstyle.demo

import android.content.res.AssetManager
import android.os.SystemClock
import android.util.Log
import com.google.ai.edge.litert.Accelerator
import com.google.ai.edge.litert.CompiledModel
import com.google.ai.edge.litert.Environment
import com.google.ai.edge.litert.TensorBuffer

/** Which accelerator a [Translator] runs on and, when it is not the one asked for, why. */
class AcceleratorChoice(val accelerator: Accelerator, val cpuThreads: Int, val note: String?) {
    val label: String
        get() {
            val name = if (accelerator == Accelerator.GPU) {
                "GPU (LiteRT GPU accelerator)"
            } else {
                "CPU (XNNPACK, $cpuThreads threads)"
            }
            return if (note == null) name else "$name; $note"
        }
}

/**
 * One models.json entry compiled with LiteRT's CompiledModel API for one accelerator: the
 * GPU when asked for and available, otherwise the CPU (XNNPACK) with [cpuThreads] threads.
 *
 * Not thread-safe, and the GPU accelerator's context belongs to the thread that compiled the
 * model: create, run and close a Translator on one thread (MainViewModel uses a
 * single-thread dispatcher).
 */
class Translator private constructor(
    val entry: ModelEntry,
    private val env: Environment,
    private val model: CompiledModel,
    private val inputBuffer: TensorBuffer,
    private val outputBuffer: TensorBuffer,
    val choice: AcceleratorChoice,
    /** model load + compile + one warm-up run, ms */
    val compileMs: Double
) : AutoCloseable {

    private var closed = false

    /** Runs the model on [input] (made by Preprocessing.toTensor) and returns its raw output. */
    fun run(input: TensorData): TensorData {
        check(!closed) { "translator is closed" }
        return runModel(entry, model, inputBuffer, outputBuffer, input)
    }

    override fun close() {
        if (closed) return
        closed = true
        inputBuffer.close()
        outputBuffer.close()
        model.close()
        env.close()
    }

    companion object {
        private const val TAG = "Translator"

        /** CPU threads: the big cores of a typical phone SoC; more threads rarely help. */
        fun defaultCpuThreads(): Int {
            val cores = Runtime.getRuntime().availableProcessors()
            return if (cores < 4) cores.coerceAtLeast(1) else 4
        }

        /**
         * Loads `assets/models/<entry.file>` and compiles it: for the GPU when [preferGpu],
         * the variant is a float one and the device has LiteRT's GPU accelerator (falling back
         * to the CPU if compiling or the first run fails there), else for the CPU.
         */
        fun open(
            assets: AssetManager,
            entry: ModelEntry,
            preferGpu: Boolean,
            cpuThreads: Int = defaultCpuThreads()
        ): Translator {
            var note: String? = null
            if (preferGpu) {
                if (entry.input.dtype.quantized) {
                    // XNNPACK has int8 kernels; mobile GPUs compute in float.
                    note = "int8 models run on the CPU"
                } else {
                    val env = Environment.create()
                    val gpuAvailable = try {
                        env.getAvailableAccelerators().contains(Accelerator.GPU)
                    } catch (e: Exception) {
                        false
                    }
                    if (gpuAvailable) {
                        try {
                            return compile(assets, entry, env, Accelerator.GPU, cpuThreads, null)
                        } catch (e: Exception) {
                            Log.w(TAG, "GPU compile/run of ${entry.file} failed, using the CPU", e)
                            note = "GPU failed (${e.message ?: e.javaClass.simpleName})"
                        }
                    } else {
                        note = "no GPU accelerator on this device"
                    }
                    env.close()
                }
            }
            return compile(assets, entry, Environment.create(), Accelerator.CPU, cpuThreads, note)
        }

        private fun compile(
            assets: AssetManager,
            entry: ModelEntry,
            env: Environment,
            accelerator: Accelerator,
            cpuThreads: Int,
            note: String?
        ): Translator {
            val start = SystemClock.elapsedRealtimeNanos()
            val options = CompiledModel.Options(accelerator)
            if (accelerator == Accelerator.CPU) {
                options.cpuOptions = CompiledModel.CpuOptions(numThreads = cpuThreads)
            }
            val model = try {
                CompiledModel.create(assets, entry.assetPath, options, env)
            } catch (e: Exception) {
                if (accelerator == Accelerator.CPU) env.close() // open() closes a GPU env
                throw e
            }
            var input: TensorBuffer? = null
            var output: TensorBuffer? = null
            try {
                val inputBuffer = model.createInputBuffer(entry.input.name, entry.signatureKey)
                input = inputBuffer
                val outputBuffer = model.createOutputBuffer(entry.output.name, entry.signatureKey)
                output = outputBuffer
                // Warm-up run: GPU programs are built on the first run; this also makes a
                // GPU that compiles the model but cannot run it fall back to the CPU here.
                val zeros: TensorData = if (entry.input.dtype.quantized) {
                    TensorData.Bytes(ByteArray(entry.input.elements))
                } else {
                    TensorData.Floats(FloatArray(entry.input.elements))
                }
                runModel(entry, model, inputBuffer, outputBuffer, zeros)
                val ms = (SystemClock.elapsedRealtimeNanos() - start) / 1e6
                val choice = AcceleratorChoice(accelerator, cpuThreads, note)
                return Translator(entry, env, model, inputBuffer, outputBuffer, choice, ms)
            } catch (e: Exception) {
                input?.close()
                output?.close()
                model.close()
                if (accelerator == Accelerator.CPU) env.close()
                throw e
            }
        }

        private fun runModel(
            entry: ModelEntry,
            model: CompiledModel,
            inputBuffer: TensorBuffer,
            outputBuffer: TensorBuffer,
            input: TensorData
        ): TensorData {
            when (input) {
                is TensorData.Floats -> inputBuffer.writeFloat(input.values)
                // uint8 and int8 tensors take the same bytes: writeInt8 copies them as they are
                is TensorData.Bytes -> inputBuffer.writeInt8(input.values)
            }
            model.run(
                mapOf(entry.input.name to inputBuffer),
                mapOf(entry.output.name to outputBuffer),
                entry.signatureKey
            )
            return if (entry.output.dtype.quantized) {
                TensorData.Bytes(outputBuffer.readInt8())
            } else {
                TensorData.Floats(outputBuffer.readFloat())
            }
        }
    }
}
