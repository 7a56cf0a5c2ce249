// ImageIO.decode and the EXIF orientation mapping (Orientation.upright) on the fakes of
// jvm-check/fakes; tests/test_android_contract.py also checks the mapping against Pillow.
package dev.tfstyle.demo

import android.app.Application
import android.net.Uri
import android.os.Build
import org.junit.Assert.assertArrayEquals
import org.junit.Assert.assertEquals
import org.junit.Before
import org.junit.Test
import tfstyle.fake.FakeDevice
import tfstyle.fake.FakePhoto

class ImageIOTest {
    // Stored 3 x 2:   a b c
    //                 d e f
    private val a = 1
    private val b = 2
    private val c = 3
    private val d = 4
    private val e = 5
    private val f = 6
    private val stored = Photo(intArrayOf(a, b, c, d, e, f), 3, 2)

    @Before
    fun setUp() {
        FakeDevice.reset()
    }

    private fun assertPhoto(expected: IntArray, width: Int, height: Int, photo: Photo) {
        assertEquals(width, photo.width)
        assertEquals(height, photo.height)
        assertArrayEquals(expected, photo.argb)
    }

    @Test
    fun everyExifOrientationTurnsThePhotoUpright() {
        val cases = mapOf(
            Orientation.NORMAL to Triple(intArrayOf(a, b, c, d, e, f), 3, 2),
            Orientation.FLIP_HORIZONTAL to Triple(intArrayOf(c, b, a, f, e, d), 3, 2),
            Orientation.ROTATE_180 to Triple(intArrayOf(f, e, d, c, b, a), 3, 2),
            Orientation.FLIP_VERTICAL to Triple(intArrayOf(d, e, f, a, b, c), 3, 2),
            Orientation.TRANSPOSE to Triple(intArrayOf(a, d, b, e, c, f), 2, 3),
            // the camera was turned clockwise: the stored left column is the top row, read upwards
            Orientation.ROTATE_90 to Triple(intArrayOf(d, a, e, b, f, c), 2, 3),
            Orientation.TRANSVERSE to Triple(intArrayOf(f, c, e, b, d, a), 2, 3),
            Orientation.ROTATE_270 to Triple(intArrayOf(c, f, b, e, a, d), 2, 3)
        )
        for ((tag, expected) in cases) {
            assertPhoto(expected.first, expected.second, expected.third, Orientation.upright(stored, tag))
        }
        for (unknown in intArrayOf(0, 9, -1)) {
            assertPhoto(stored.argb, 3, 2, Orientation.upright(stored, unknown))
        }
    }

    @Test
    fun beforeAndroid9TheExifTagIsAppliedByTheApp() {
        Build.VERSION.SDK_INT = 27 // BitmapFactory, which leaves the pixels as stored
        val uri = Uri.parse("content://photos/rotated")
        FakeDevice.photos[uri] = FakePhoto(3, 2, stored.argb, orientation = Orientation.ROTATE_90)
        assertPhoto(intArrayOf(d, a, e, b, f, c), 2, 3, ImageIO.decode(Application(), uri, 1))
    }

    @Test
    fun fromAndroid9TheDecoderAppliesItAndTheAppDoesNotTurnItAgain() {
        Build.VERSION.SDK_INT = 28
        val uri = Uri.parse("content://photos/rotated")
        FakeDevice.photos[uri] = FakePhoto(3, 2, stored.argb, orientation = Orientation.ROTATE_90)
        assertPhoto(intArrayOf(d, a, e, b, f, c), 2, 3, ImageIO.decode(Application(), uri, 1))
    }

    @Test
    fun bigPhotosAreSubsampledKeepingTwiceTheModelSize() {
        for (sdk in intArrayOf(26, 34)) {
            Build.VERSION.SDK_INT = sdk
            val uri = Uri.parse("content://photos/big")
            FakeDevice.photos[uri] = FakePhoto(40, 36, IntArray(40 * 36) { it })
            val photo = ImageIO.decode(Application(), uri, 4) // 36 / 4 = 9 >= 8 > 36 / 8
            assertEquals(4, FakeDevice.lastSampleSize)
            assertEquals(10, photo.width)
            assertEquals(9, photo.height)
        }
        assertEquals(1, ImageIO.sampleSize(15, 40, 4))
        assertEquals(2, ImageIO.sampleSize(16, 40, 4))
    }
}
