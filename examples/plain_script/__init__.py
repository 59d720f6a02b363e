"""Example: qengine from a plain Python script, with a cluster started by ``qcluster``."""
