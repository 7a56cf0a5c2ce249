// Fake of androidx.core.content.FileProvider for the JVM tests (only compiled against).
package androidx.core.content

import android.content.Context
import android.net.Uri
import java.io.File

object FileProvider {
    fun getUriForFile(context: Context, authority: String, file: File): Uri =
        Uri.parse("content://$authority/${file.name}")
}
