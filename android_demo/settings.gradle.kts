pluginManagement {
    repositories {
        google()
        mavenCentral()
        gradlePluginPortal()
    }
}

dependencyResolutionManagement {
    repositoriesMode.set(RepositoriesMode.FAIL_ON_PROJECT_REPOS)
    repositories {
        google() // com.google.ai.edge.litert:* and androidx.* live on Google's Maven repository
        mavenCentral()
    }
}

rootProject.name = "tfstyle-demo"
include(":app")
