"""Example: a FastAPI app that sets the engine up in its lifespan and waits off the event loop."""
