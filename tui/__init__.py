"""tui: the Textual monitor ``qmonitor``. Not built yet."""
