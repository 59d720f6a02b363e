"""The example site's project package: settings, URLs and the WSGI entry point."""
