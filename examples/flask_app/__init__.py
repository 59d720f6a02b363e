"""Example: a Flask app that queues tasks through the ``qengine.integrations.flask`` extension."""
