package dev.tfstyle.demo

import android.Manifest
import android.content.ActivityNotFoundException
import android.content.ClipData
import android.content.Intent
import android.content.pm.PackageManager
import android.net.Uri
import android.os.Build
import android.os.Bundle
import android.view.View
import android.widget.AdapterView
import android.widget.ArrayAdapter
import android.widget.Button
import android.widget.ImageView
import android.widget.ProgressBar
import android.widget.Spinner
import android.widget.TextView
import android.widget.Toast
import androidx.activity.enableEdgeToEdge
import androidx.activity.result.PickVisualMediaRequest
import androidx.activity.result.contract.ActivityResultContracts
import androidx.activity.viewModels
import androidx.appcompat.app.AppCompatActivity
import androidx.core.content.ContextCompat
import androidx.core.view.ViewCompat
import androidx.core.view.WindowInsetsCompat
import androidx.lifecycle.Lifecycle
import androidx.lifecycle.lifecycleScope
import androidx.lifecycle.repeatOnLifecycle
import com.google.android.material.materialswitch.MaterialSwitch
import java.io.IOException
import java.text.SimpleDateFormat
import java.util.Date
import java.util.Locale
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.launch
import kotlinx.coroutines.withContext

/**
 * Pick a photo (gallery) or take one (camera), choose a model of models.json, and see the
 * model's input and output side by side with the inference time and the accelerator.
 */
class MainActivity : AppCompatActivity() {

    private val viewModel: MainViewModel by viewModels()

    private lateinit var modelSpinner: Spinner
    private lateinit var gpuSwitch: MaterialSwitch
    private lateinit var pickButton: Button
    private lateinit var cameraButton: Button
    private lateinit var inputImage: ImageView
    private lateinit var outputImage: ImageView
    private lateinit var progress: ProgressBar
    private lateinit var statusText: TextView
    private lateinit var saveButton: Button
    private lateinit var shareButton: Button

    /** The catalog the spinner's adapter was made from. */
    private var spinnerCatalog: ModelCatalog? = null

    /** Where the camera app writes the picture being taken; kept across recreation. */
    private var pendingCameraUri: Uri? = null

    private val pickPhoto =
        registerForActivityResult(ActivityResultContracts.PickVisualMedia()) { uri ->
            if (uri != null) viewModel.onPhoto(uri)
        }

    private val takePhoto =
        registerForActivityResult(ActivityResultContracts.TakePicture()) { saved ->
            val uri = pendingCameraUri
            if (saved && uri != null) viewModel.onPhoto(uri)
        }

    private val requestStoragePermission =
        registerForActivityResult(ActivityResultContracts.RequestPermission()) { granted ->
            if (granted) saveResult() else toast(getString(R.string.storage_denied))
        }

    override fun onCreate(savedInstanceState: Bundle?) {
        enableEdgeToEdge()
        super.onCreate(savedInstanceState)
        setContentView(R.layout.activity_main)
        pendingCameraUri = savedInstanceState?.getString(KEY_CAMERA_URI)?.let { Uri.parse(it) }

        val root = findViewById<View>(R.id.root)
        ViewCompat.setOnApplyWindowInsetsListener(root) { view, insets ->
            val bars = insets.getInsets(
                WindowInsetsCompat.Type.systemBars() or WindowInsetsCompat.Type.displayCutout()
            )
            view.setPadding(bars.left, bars.top, bars.right, bars.bottom)
            insets
        }

        modelSpinner = findViewById(R.id.model_spinner)
        gpuSwitch = findViewById(R.id.gpu_switch)
        pickButton = findViewById(R.id.pick_button)
        cameraButton = findViewById(R.id.camera_button)
        inputImage = findViewById(R.id.input_image)
        outputImage = findViewById(R.id.output_image)
        progress = findViewById(R.id.progress)
        statusText = findViewById(R.id.status_text)
        saveButton = findViewById(R.id.save_button)
        shareButton = findViewById(R.id.share_button)

        modelSpinner.onItemSelectedListener = object : AdapterView.OnItemSelectedListener {
            override fun onItemSelected(parent: AdapterView<*>?, view: View?, position: Int, id: Long) {
                viewModel.selectModel(position)
            }

            override fun onNothingSelected(parent: AdapterView<*>?) = Unit
        }
        gpuSwitch.setOnCheckedChangeListener { _, checked -> viewModel.setPreferGpu(checked) }
        pickButton.setOnClickListener {
            pickPhoto.launch(
                PickVisualMediaRequest(ActivityResultContracts.PickVisualMedia.ImageOnly)
            )
        }
        cameraButton.setOnClickListener { takePicture() }
        saveButton.setOnClickListener { onSave() }
        shareButton.setOnClickListener { shareResult() }

        lifecycleScope.launch {
            repeatOnLifecycle(Lifecycle.State.STARTED) {
                viewModel.state.collect { render(it) }
            }
        }
    }

    override fun onSaveInstanceState(outState: Bundle) {
        super.onSaveInstanceState(outState)
        pendingCameraUri?.let { outState.putString(KEY_CAMERA_URI, it.toString()) }
    }

    private fun render(state: UiState) {
        val catalog = state.catalog
        if (catalog != null && catalog !== spinnerCatalog) {
            spinnerCatalog = catalog
            val adapter = ArrayAdapter(
                this, android.R.layout.simple_spinner_item, catalog.entries.map { it.label }
            )
            adapter.setDropDownViewResource(android.R.layout.simple_spinner_dropdown_item)
            modelSpinner.adapter = adapter
        }
        if (catalog != null && modelSpinner.selectedItemPosition != state.selected) {
            modelSpinner.setSelection(state.selected, false)
        }
        if (gpuSwitch.isChecked != state.preferGpu) gpuSwitch.isChecked = state.preferGpu

        val ready = catalog != null
        pickButton.isEnabled = ready
        cameraButton.isEnabled = ready
        modelSpinner.isEnabled = ready
        progress.visibility = if (state.busy) View.VISIBLE else View.GONE

        val result = state.result
        inputImage.setImageBitmap(result?.input)
        outputImage.setImageBitmap(result?.output)
        saveButton.isEnabled = result != null && !state.busy
        shareButton.isEnabled = result != null && !state.busy

        statusText.text = when {
            state.catalogError != null -> getString(R.string.no_models, state.catalogError)
            state.error != null -> state.error
            state.busy -> getString(R.string.translating)
            result != null -> describe(result)
            else -> getString(R.string.hint_pick)
        }
    }

    private fun describe(r: TranslationResult): String {
        val e = r.entry
        val lines = ArrayList<String>()
        lines.add("${e.prefix}: ${e.directionLabel} · ${e.variant} · ${e.input.shape[1]}×${e.input.shape[2]}")
        lines.add(String.format(Locale.US, "Inference %.0f ms on %s", r.inferenceMs, r.choice.label))
        val compile = r.compileMs?.let { String.format(Locale.US, " · load + compile %.0f ms", it) } ?: ""
        lines.add(String.format(Locale.US, "Pre %.0f ms · post %.0f ms%s", r.preMs, r.postMs, compile))
        val psnr = e.agreementPsnrDb
        if (psnr != null) {
            val min = e.thresholdDb?.let { String.format(Locale.US, " (min %.0f dB)", it) } ?: ""
            lines.add(String.format(Locale.US, "Export check: %.1f dB PSNR vs Keras%s", psnr, min))
        }
        return lines.joinToString("\n")
    }

    private fun takePicture() {
        val uri = try {
            ImageIO.cameraUri(this)
        } catch (e: IOException) {
            toast(e.message ?: e.toString())
            return
        }
        pendingCameraUri = uri
        try {
            takePhoto.launch(uri)
        } catch (e: ActivityNotFoundException) {
            toast(getString(R.string.no_camera))
        }
    }

    private fun onSave() {
        val needsPermission = Build.VERSION.SDK_INT < Build.VERSION_CODES.Q &&
            ContextCompat.checkSelfPermission(this, Manifest.permission.WRITE_EXTERNAL_STORAGE) !=
            PackageManager.PERMISSION_GRANTED
        if (needsPermission) {
            requestStoragePermission.launch(Manifest.permission.WRITE_EXTERNAL_STORAGE)
        } else {
            saveResult()
        }
    }

    private fun saveResult() {
        val result = viewModel.state.value.result ?: return
        val context = applicationContext
        lifecycleScope.launch {
            try {
                withContext(Dispatchers.IO) {
                    ImageIO.saveToGallery(context, result.output, fileName(result))
                }
                toast(getString(R.string.saved))
            } catch (e: Exception) {
                toast(getString(R.string.save_failed, e.message ?: e.toString()))
            }
        }
    }

    private fun shareResult() {
        val result = viewModel.state.value.result ?: return
        val context = applicationContext
        lifecycleScope.launch {
            try {
                val uri = withContext(Dispatchers.IO) {
                    ImageIO.shareableUri(context, result.output, fileName(result))
                }
                val send = Intent(Intent.ACTION_SEND).apply {
                    type = "image/png"
                    putExtra(Intent.EXTRA_STREAM, uri)
                    clipData = ClipData.newRawUri("", uri)
                    addFlags(Intent.FLAG_GRANT_READ_URI_PERMISSION)
                }
                startActivity(Intent.createChooser(send, getString(R.string.share_title)))
            } catch (e: Exception) {
                toast(getString(R.string.share_failed, e.message ?: e.toString()))
            }
        }
    }

    private fun fileName(r: TranslationResult): String {
        val stamp = SimpleDateFormat("yyyyMMdd_HHmmss", Locale.US).format(Date())
        return "tfstyle_${r.entry.modelName}_${r.entry.variant}_$stamp.png"
    }

    private fun toast(message: String) {
        Toast.makeText(this, message, Toast.LENGTH_LONG).show()
    }

    private companion object {
        const val KEY_CAMERA_URI = "camera_uri"
    }
}
