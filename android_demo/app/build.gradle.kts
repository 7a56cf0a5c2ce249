import org.jetbrains.kotlin.gradle.dsl.JvmTarget

plugins {
    alias(libs.plugins.android.application)
    alias(libs.plugins.kotlin.android)
}

android {
    namespace = "dev.tfstyle.demo"
    // 36: core-ktx 1.17 / activity 1.12 / lifecycle 2.10 are built against API 36 (Google's
    // LiteRT sample uses the same compileSdk with these versions and AGP 8.9.1).
    compileSdk = 36

    defaultConfig {
        applicationId = "dev.tfstyle.demo"
        // LiteRT 2.1.6 declares minSdk 23 (its litert/kotlin AndroidManifest.xml); this app
        // needs 26 (Android 8.0) for android.graphics.ColorSpace, which it uses to decode
        // every photo into sRGB.
        minSdk = 26
        targetSdk = 35
        versionCode = 1
        versionName = "1.0"
    }

    buildTypes {
        release {
            isMinifyEnabled = false
            proguardFiles(getDefaultProguardFile("proguard-android-optimize.txt"), "proguard-rules.pro")
        }
    }

    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_17
        targetCompatibility = JavaVersion.VERSION_17
    }

    buildFeatures {
        buildConfig = false
    }

    // .tflite files stay uncompressed in the APK, so LiteRT can map them from the assets.
    androidResources {
        noCompress += "tflite"
    }
}

kotlin {
    compilerOptions {
        jvmTarget.set(JvmTarget.JVM_17)
    }
}

// The models are not committed: ./fetch_models.sh EXPORT_DIR copies them into
// src/main/assets/models/. Fail early with the fix instead of shipping an app without them.
val modelsJson = layout.projectDirectory.file("src/main/assets/models/models.json")
tasks.named("preBuild") {
    doFirst {
        if (!modelsJson.asFile.isFile) {
            throw GradleException(
                "${modelsJson.asFile} is missing: export the generators " +
                    "(python -m export.generators --model_dir=... --out_dir=OUT) and run " +
                    "android_demo/fetch_models.sh OUT first (see android_demo/README.md)"
            )
        }
    }
}

dependencies {
    implementation(libs.litert)
    implementation(libs.androidx.core.ktx)
    implementation(libs.androidx.appcompat)
    implementation(libs.androidx.activity.ktx)
    implementation(libs.androidx.lifecycle.runtime.ktx)
    implementation(libs.androidx.lifecycle.viewmodel.ktx)
    implementation(libs.androidx.exifinterface)
    implementation(libs.kotlinx.coroutines.android)
    implementation(libs.material)

    testImplementation(libs.junit)
    // android.jar's org.json is a stub in local unit tests; the real implementation replaces it.
    testImplementation(libs.org.json)
}
