package io.vfioproxy.device.sim;

import static org.assertj.core.api.Assertions.assertThat;

import java.util.HashSet;
import java.util.List;
import java.util.Set;
import net.jqwik.api.ForAll;
import net.jqwik.api.Property;
import net.jqwik.api.constraints.IntRange;
import net.jqwik.api.constraints.Size;

/** The digest kept as pages change is the digest of the versions the image holds, however they got there. */
class PageImageTest {

    private static final int PAGE = 4096;
    private static final int PAGES = 64;

    @Property
    void theRunningDigestIsTheDigestOfTheVersionsHeld(@ForAll @Size(max = 200) List<@IntRange(max = PAGES - 1) Integer> writes,
            @ForAll long seed) {
        PageImage image = PageImage.fresh(PAGE, PAGES, seed);
        writes.forEach(image::write);
        PageImage rebuilt = new PageImage(PAGE, seed, image.versions());
        assertThat(image.digest()).isEqualTo(rebuilt.digest());

        // A resuming stream sets the pages in any order, from an image of version 0.
        PageImage loaded = new PageImage(PAGE, seed, new int[PAGES]);
        for (int page = PAGES - 1; page >= 0; page--) {
            loaded.set(page, image.version(page));
        }
        assertThat(loaded.digest()).isEqualTo(image.digest());
    }

    @Property
    void onePageAtAnotherVersionChangesTheDigest(@ForAll @IntRange(max = PAGES - 1) int page,
            @ForAll @IntRange(min = 2, max = 1 << 20) int version, @ForAll long seed) {
        PageImage image = PageImage.fresh(PAGE, PAGES, seed);
        long before = image.digest();
        image.set(page, version);
        assertThat(image.digest()).isNotEqualTo(before);
        image.set(page, 1);
        assertThat(image.digest()).isEqualTo(before);
    }

    @Property
    void theSeedAndTheGeometryAreInTheDigest(@ForAll long seed) {
        Set<Long> digests = new HashSet<>();
        digests.add(PageImage.fresh(PAGE, PAGES, seed).digest());
        digests.add(PageImage.fresh(PAGE, PAGES, seed + 1).digest());
        digests.add(PageImage.fresh(2 * PAGE, PAGES, seed).digest());
        digests.add(PageImage.fresh(PAGE, PAGES + 1, seed).digest());
        assertThat(digests).hasSize(4);
    }
}
