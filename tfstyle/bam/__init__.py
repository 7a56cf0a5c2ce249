"""BAM emotion domains: the SQLite selection, downloads, the domain folders and their manifest."""
