"""tui: the Textual monitor ``qmonitor`` (clusters, tasks, failures, schedules, queue).

It talks to qengine only through ``tui.source``, and never imports Django.
"""
