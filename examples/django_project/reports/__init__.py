"""The reports app: a view queues a report, a worker builds it, a hook mails it."""
