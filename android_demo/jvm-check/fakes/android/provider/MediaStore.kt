// Fake of android.provider.MediaStore for the JVM tests (only compiled against).
package android.provider

import android.net.Uri

object MediaStore {
    const val VOLUME_EXTERNAL_PRIMARY = "external_primary"

    object Images {
        object Media {
            const val DISPLAY_NAME = "_display_name"
            const val MIME_TYPE = "mime_type"
            const val RELATIVE_PATH = "relative_path"
            const val IS_PENDING = "is_pending"
            val EXTERNAL_CONTENT_URI: Uri = Uri.parse("content://media/external/images/media")
            fun getContentUri(volumeName: String): Uri = Uri.parse("content://media/$volumeName/images/media")
        }
    }
}
