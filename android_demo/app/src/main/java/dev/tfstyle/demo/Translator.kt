package dev.tfstyle.demo

import android.content.res.AssetManager
import android.os.SystemClock
import android.util.Log
import com.google.ai.edge.litert.Accelerator
import com.google.ai.edge.litert.CompiledModel
import com.google.ai.edge.litert.Environment
import com.google.ai.edge.litert.TensorBuffer
import java.util.Locale
import kotlin.math.log10

/**
 * Where a [Translator] runs: the GPU, which then runs every operator of the model (it was
 * compiled for the GPU alone, which LiteRT refuses for a model with operators left to the
 * CPU), or the CPU (XNNPACK); when the GPU was asked for but not used, [note] says why.
 */
class AcceleratorChoice(
    val accelerator: Accelerator,
    val cpuThreads: Int,
    val note: String?,
    /** PSNR (dB) of the GPU's output against the CPU's on the warm-up photo, when compared */
    val gpuAgreementDb: Double?
) {
    val label: String
        get() {
            val name = if (accelerator == Accelerator.GPU) {
                String.format(
                    Locale.US, "GPU, every operator (%.1f dB against the CPU on this photo)",
                    gpuAgreementDb ?: Double.NaN
                )
            } else {
                "CPU (XNNPACK, $cpuThreads threads)"
            }
            return if (note == null) name else "$name; $note"
        }
}

/**
 * One models.json entry compiled with LiteRT's CompiledModel API: on the GPU when asked for,
 * available, able to run the whole model and in agreement with the CPU on the warm-up photo;
 * otherwise on the CPU (XNNPACK) with [AcceleratorChoice.note] saying why.
 *
 * Not thread-safe, and the GPU accelerator's context belongs to the thread that compiled the
 * model: create, run and close a Translator on one thread (MainViewModel uses a
 * single-thread dispatcher).
 */
class Translator private constructor(
    val entry: ModelEntry,
    private val compiled: Compiled,
    val choice: AcceleratorChoice,
    /** model load + compile + warm-up run(s) + the GPU check, ms */
    val compileMs: Double
) : AutoCloseable {

    private var closed = false

    /** Runs the model on [input] (made by Preprocessing.toTensor) and returns its raw output. */
    fun run(input: TensorData): TensorData {
        check(!closed) { "translator is closed" }
        return compiled.run(input)
    }

    override fun close() {
        if (closed) return
        closed = true
        compiled.close()
    }

    /** A compiled model with its environment and reused tensor buffers. */
    private class Compiled(
        private val entry: ModelEntry,
        private val env: Environment,
        private val model: CompiledModel,
        private val input: TensorBuffer,
        private val output: TensorBuffer
    ) : AutoCloseable {
        fun run(data: TensorData): TensorData {
            when (data) {
                is TensorData.Floats -> input.writeFloat(data.values)
                // uint8 and int8 tensors take the same bytes: writeInt8 copies them as they are
                is TensorData.Bytes -> input.writeInt8(data.values)
            }
            model.run(
                mapOf(entry.input.name to input), mapOf(entry.output.name to output),
                entry.signatureKey
            )
            return if (entry.output.dtype.quantized) {
                TensorData.Bytes(output.readInt8())
            } else {
                TensorData.Floats(output.readFloat())
            }
        }

        override fun close() {
            input.close()
            output.close()
            model.close()
            env.close()
        }
    }

    companion object {
        private const val TAG = "Translator"

        /**
         * The least PSNR (dB) of the GPU's output against the CPU's for the GPU to be used:
         * the export's threshold for float16 files against Keras (tfstyle.deploy.checks
         * DEFAULT_MIN_PSNR["float16"]), as the GPU computes in float16.
         */
        const val GPU_MIN_PSNR_DB = 40.0

        /** CPU threads: the big cores of a typical phone SoC; more threads rarely help. */
        fun defaultCpuThreads(): Int {
            val cores = Runtime.getRuntime().availableProcessors()
            return if (cores < 4) cores.coerceAtLeast(1) else 4
        }

        /**
         * Loads `assets/models/<entry.file>`, compiles it and runs it once on [warmUp] (the
         * photo about to be translated, made by Preprocessing.toTensor). With [preferGpu],
         * a float model is compiled for the GPU alone and its output on [warmUp] compared
         * with the CPU's; the GPU is kept when it agrees within [GPU_MIN_PSNR_DB], else the
         * CPU is used and the choice's note says why (as it does when the device has no GPU
         * accelerator or LiteRT cannot compile the model for it).
         */
        fun open(
            assets: AssetManager,
            entry: ModelEntry,
            preferGpu: Boolean,
            warmUp: TensorData,
            cpuThreads: Int = defaultCpuThreads()
        ): Translator {
            val start = SystemClock.elapsedRealtimeNanos()
            fun done(compiled: Compiled, accelerator: Accelerator, note: String?, db: Double?) =
                Translator(entry, compiled, AcceleratorChoice(accelerator, cpuThreads, note, db),
                    (SystemClock.elapsedRealtimeNanos() - start) / 1e6)

            if (!preferGpu || entry.input.dtype.quantized) {
                // XNNPACK has int8 kernels; mobile GPUs compute in float.
                val note = if (preferGpu) "int8 models run on the CPU" else null
                val cpu = compile(assets, entry, Accelerator.CPU, cpuThreads, warmUp)
                return done(cpu.first, Accelerator.CPU, note, null)
            }
            val gpuEnv = Environment.create()
            val gpuAvailable = try {
                gpuEnv.getAvailableAccelerators().contains(Accelerator.GPU)
            } catch (e: Exception) {
                false
            }
            if (!gpuAvailable) {
                gpuEnv.close()
                val cpu = compile(assets, entry, Accelerator.CPU, cpuThreads, warmUp)
                return done(cpu.first, Accelerator.CPU, "no GPU accelerator on this device", null)
            }
            val gpu = try {
                compile(assets, entry, Accelerator.GPU, cpuThreads, warmUp, gpuEnv)
            } catch (e: Exception) {
                Log.w(TAG, "GPU compile/run of ${entry.file} failed, using the CPU", e)
                val cpu = compile(assets, entry, Accelerator.CPU, cpuThreads, warmUp)
                val why = e.message ?: e.javaClass.simpleName
                return done(cpu.first, Accelerator.CPU, "the GPU cannot run this model ($why)", null)
            }
            val cpu = try {
                compile(assets, entry, Accelerator.CPU, cpuThreads, warmUp)
            } catch (e: Exception) {
                gpu.first.close()
                throw e
            }
            val db = psnr(
                Preprocessing.fromTensor(gpu.second, entry.output),
                Preprocessing.fromTensor(cpu.second, entry.output)
            )
            if (!(db >= GPU_MIN_PSNR_DB)) { // NaN too: a GPU that computes NaNs is not used
                gpu.first.close()
                val note = if (db.isNaN()) {
                    "the GPU's output is not a number"
                } else {
                    String.format(
                        Locale.US, "the GPU's output differs from the CPU's (%.1f dB < %.0f dB)",
                        db, GPU_MIN_PSNR_DB
                    )
                }
                return done(cpu.first, Accelerator.CPU, note, db)
            }
            cpu.first.close()
            return done(gpu.first, Accelerator.GPU, null, db)
        }

        /**
         * Compiles [entry] for [accelerator] alone (in [env], which it takes over) and runs
         * it on [warmUp]: GPU programs are built on the first run, so a GPU that compiles the
         * model but cannot run it fails here. Returns the model and its warm-up output.
         */
        private fun compile(
            assets: AssetManager,
            entry: ModelEntry,
            accelerator: Accelerator,
            cpuThreads: Int,
            warmUp: TensorData,
            env: Environment = Environment.create()
        ): Pair<Compiled, TensorData> {
            val options = CompiledModel.Options(accelerator)
            if (accelerator == Accelerator.CPU) {
                options.cpuOptions = CompiledModel.CpuOptions(numThreads = cpuThreads)
            }
            var model: CompiledModel? = null
            var input: TensorBuffer? = null
            var output: TensorBuffer? = null
            try {
                val m = CompiledModel.create(assets, entry.assetPath, options, env)
                model = m
                val i = m.createInputBuffer(entry.input.name, entry.signatureKey)
                input = i
                val o = m.createOutputBuffer(entry.output.name, entry.signatureKey)
                output = o
                val compiled = Compiled(entry, env, m, i, o)
                return Pair(compiled, compiled.run(warmUp))
            } catch (e: Exception) {
                input?.close()
                output?.close()
                model?.close()
                env.close()
                throw e
            }
        }

        /**
         * PSNR (dB) of [a] against [b], float pixels in [0, 255], as tfstyle.deploy.checks
         * .psnr computes it (100 dB for outputs equal to float rounding, NaN for NaNs).
         */
        fun psnr(a: FloatArray, b: FloatArray): Double {
            require(a.size == b.size && a.isNotEmpty()) { "sizes differ: ${a.size} vs ${b.size}" }
            var sum = 0.0
            for (i in a.indices) {
                val d = a[i].toDouble() - b[i].toDouble()
                sum += d * d
            }
            val mse = sum / a.size
            val peak = 255.0 * 255.0
            if (mse <= peak * Math.pow(10.0, -PSNR_CAP_DB / 10)) return PSNR_CAP_DB
            return 10.0 * log10(peak / mse)
        }

        private const val PSNR_CAP_DB = 100.0
    }
}
