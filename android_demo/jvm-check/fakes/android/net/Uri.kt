// Fake of android.net.Uri for the JVM tests.
package android.net

class Uri private constructor(private val text: String) {
    override fun toString(): String = text
    override fun equals(other: Any?): Boolean = other is Uri && other.text == text
    override fun hashCode(): Int = text.hashCode()

    companion object {
        fun parse(uriString: String): Uri = Uri(uriString)
    }
}
