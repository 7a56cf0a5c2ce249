"""BAM emotion domains: the SQLite selection, downloads, the domain folders and their manifest.

`select` (what a run asks for, the database, ranked candidates, the domain split),
`download` (an image's bytes from a mirror or over HTTP, through `tfstyle.core.fetch`),
`checks` (what an image must be to be kept), `manifest` (manifest.csv, bam_domains.json, the
summary), `builder` (`build_domains`: the fill loop and resume), `demo` (an offline demo
database). `python -m train.bam_domains` is the command.
"""
